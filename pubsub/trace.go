package pubsub

import (
	"context"
	"encoding/json"
	"strconv"
	"time"
)

// Publication describes the event that a notify delivers: its topic and
// its publisher's W3C trace context ("" for none). A Server with
// [Options].Trace makes each notify with a context that carries it, and
// its Observer of the connections reads it there with
// [PublicationFromContext]: otelwsrpc's starts the notify's span, by the
// messaging semantic conventions, linked to the publish's span.
type Publication struct {
	Topic       string
	TraceParent string // the publisher's span, as Options.Trace's Inject returned it
	TraceState  string
}

// publicationKey is the context key of a notify's Publication.
type publicationKey struct{}

// PublicationFromContext returns the Publication of the event that ctx's
// call delivers, if it is a notify (or a server-side subscription's
// function) of a [Server] with [Options].Trace: the context a
// wsrpc.Observer's CallStarted gets for the notify, or the one the
// function gets.
func PublicationFromContext(ctx context.Context) (Publication, bool) {
	p, ok := ctx.Value(publicationKey{}).(*Publication)
	if !ok {
		return Publication{}, false
	}
	return *p, true
}

// traced returns the context of an event's notifies, but for its topic:
// the Server's, with the publisher's span context as Options.Trace's
// Extract puts it there, once per event and node, so that an Observer
// need not parse traceparent once per notify. Only with Options.Trace.
func (s *Server) traced(traceparent, tracestate string) context.Context {
	if traceparent == "" {
		return s.ctx
	}
	return s.opts.Trace.Extract(s.ctx, traceparent, tracestate)
}

// withPublication returns ctx, from traced, carrying the Publication of
// the event on topic with meta's trace context: its notifies' context
// (event.ctx). A nil ctx (no Options.Trace) gives nil.
func withPublication(ctx context.Context, topic string, meta *brokerMeta) context.Context {
	if ctx == nil {
		return nil
	}
	return context.WithValue(ctx, publicationKey{}, &Publication{Topic: topic, TraceParent: meta.TraceParent, TraceState: meta.TraceState})
}

// brokerMeta is the envelope's "wsrpc" member, which a wsrpc node adds to
// its broker messages for the other wsrpc nodes (a Python node ignores
// it): when the event was published (Unix nanoseconds, by the publishing
// node's clock) and the publisher's trace context. Every member may be
// missing.
type brokerMeta struct {
	TimeNS      int64  `json:"time_ns"`
	TraceParent string `json:"traceparent"`
	TraceState  string `json:"tracestate"`
}

// maxTraceField bounds a traceparent or tracestate taken from the broker,
// as the core bounds those of a request.
const maxTraceField = 1024

// appendMeta appends the envelope's "wsrpc" member, with its leading comma.
func (m *brokerMeta) appendMeta(b []byte) []byte {
	b = append(b, `, "wsrpc": {"time_ns": `...)
	b = strconv.AppendInt(b, m.TimeNS, 10)
	if m.TraceParent != "" {
		b = append(b, `, "traceparent": `...)
		b = append(b, quote(m.TraceParent)...)
		if m.TraceState != "" {
			b = append(b, `, "tracestate": `...)
			b = append(b, quote(m.TraceState)...)
		}
	}
	return append(b, '}')
}

// decodeMeta decodes an envelope's "wsrpc" member; one that is not such
// an object counts as missing, and so do overlong trace members.
func decodeMeta(raw json.RawMessage) brokerMeta {
	var m brokerMeta
	if len(raw) == 0 || json.Unmarshal(raw, &m) != nil {
		return brokerMeta{}
	}
	if len(m.TraceParent) > maxTraceField || len(m.TraceState) > maxTraceField {
		m.TraceParent, m.TraceState = "", ""
	}
	return m
}

// lag returns how long ago m's event was published, by this node's clock
// (0 if that clock is behind the publisher's), and false if the message
// says not.
func (m *brokerMeta) lag(now time.Time) (time.Duration, bool) {
	if m.TimeNS <= 0 {
		return 0, false
	}
	return max(0, now.Sub(time.Unix(0, m.TimeNS))), true
}
