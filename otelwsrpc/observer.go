package otelwsrpc

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/rpcconv"
	"go.opentelemetry.io/otel/trace"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/pubsub"
)

// ScopeName is the instrumentation scope of the spans and metrics: the
// package's import path.
const ScopeName = "github.com/wsrpc/wsrpc/otelwsrpc"

// SystemName is the value of the rpc.system.name attribute: wsrpc's error
// codes and their meanings are JSON-RPC's.
const SystemName = "jsonrpc"

// ConnIDKey is the span attribute that holds the connection's id
// ([wsrpc.Conn.ID]), which the core's logs carry as "conn".
const ConnIDKey = attribute.Key("wsrpc.connection.id")

// Options configures an [Observer]. Nil, or the zero value, means every
// default.
type Options struct {
	// TracerProvider makes the tracer. Nil means the global one
	// (otel.GetTracerProvider()).
	TracerProvider trace.TracerProvider
	// MeterProvider makes the meter. Nil means the global one
	// (otel.GetMeterProvider()).
	MeterProvider metric.MeterProvider

	// AlwaysPropagate sends the trace context to every peer. By default it
	// goes only to a peer that negotiated the wsrpc.v1 extension (every
	// wsrpc peer): a Python peer ignores it (testdata/tracecontext-vectors.jsonl
	// records that) and has no use for it.
	AlwaysPropagate bool
	// PublicEndpoint makes an inbound call with a trace context start a
	// trace of its own, with a link to the caller's span, rather than a
	// span in the caller's trace: for a server whose clients are not
	// trusted to choose its traces (otelhttp's WithPublicEndpoint).
	PublicEndpoint bool
	// Filter, if set, tells which calls are traced and measured: those for
	// which it returns true. It must decide by its arguments alone, the
	// same way at each call. Nil means every call of a method whose name
	// does not begin with '_' (so not the keep-alive "_ping_").
	Filter func(method string, dir wsrpc.Direction) bool
}

// Observer traces and measures wsrpc calls with OpenTelemetry. It is a
// [wsrpc.Observer]: set it as the Observer of the [wsrpc.ConnOptions] of
// any number of Servers and Clients. The package doc lists its spans and
// metrics. An Observer is safe for concurrent use.
type Observer struct {
	wsrpc.NopObserver

	tracer trace.Tracer
	prop   propagation.TraceContext
	server rpcconv.ServerCallDuration
	client rpcconv.ClientCallDuration
	opts   Options

	// The attribute sets of successful calls, by method, inbound and
	// outbound: made once each, up to maxCachedSets.
	mu   sync.RWMutex
	sets [2]map[string]attribute.Set
}

// maxCachedSets bounds the methods whose attribute set is kept, each way;
// the calls of others make theirs each time.
const maxCachedSets = 1000

// okSet returns the metric attributes of a successful call.
func (o *Observer) okSet(dir wsrpc.Direction, method string) attribute.Set {
	i := 0
	if dir == wsrpc.Outbound {
		i = 1
	}
	o.mu.RLock()
	set, ok := o.sets[i][method]
	o.mu.RUnlock()
	if ok {
		return set
	}
	set = attribute.NewSet(semconv.RPCSystemNameJSONRPC, semconv.RPCMethod(method))
	o.mu.Lock()
	if o.sets[i] == nil {
		o.sets[i] = make(map[string]attribute.Set)
	}
	if len(o.sets[i]) < maxCachedSets {
		o.sets[i][method] = set
	}
	o.mu.Unlock()
	return set
}

// The span kinds' start options, made once.
var (
	kindServer = trace.WithSpanKind(trace.SpanKindServer)
	kindClient = trace.WithSpanKind(trace.SpanKindClient)
	newRoot    = trace.WithNewRoot()
)

var _ wsrpc.Observer = (*Observer)(nil)

// New returns an Observer configured by opts (nil: the defaults). It fails
// only if the MeterProvider cannot make the instruments.
func New(opts *Options) (*Observer, error) {
	o := &Observer{}
	if opts != nil {
		o.opts = *opts
	}
	if o.opts.TracerProvider == nil {
		o.opts.TracerProvider = otel.GetTracerProvider()
	}
	if o.opts.MeterProvider == nil {
		o.opts.MeterProvider = otel.GetMeterProvider()
	}
	if o.opts.Filter == nil {
		o.opts.Filter = defaultFilter
	}
	o.tracer = o.opts.TracerProvider.Tracer(ScopeName)
	meter := o.opts.MeterProvider.Meter(ScopeName)
	var errS, errC error
	o.server, errS = rpcconv.NewServerCallDuration(meter)
	o.client, errC = rpcconv.NewClientCallDuration(meter)
	if err := errors.Join(errS, errC); err != nil {
		return nil, err
	}
	return o, nil
}

func defaultFilter(method string, _ wsrpc.Direction) bool {
	return method == "" || method[0] != '_'
}

// carrier holds the two members of the wire's trace context.
type carrier struct{ parent, state string }

const (
	keyParent = "traceparent"
	keyState  = "tracestate"
)

func (c *carrier) Get(key string) string {
	switch key {
	case keyParent:
		return c.parent
	case keyState:
		return c.state
	}
	return ""
}

func (c *carrier) Set(key, value string) {
	switch key {
	case keyParent:
		c.parent = value
	case keyState:
		c.state = value
	}
}

func (c *carrier) Keys() []string { return []string{keyParent, keyState} }

// MessagingSystem is the messaging.system attribute of a notify span.
const MessagingSystem = "wsrpc"

// notifyMethod is the method by which package pubsub delivers an event.
const notifyMethod = "notify"

// CallStarted starts the call's span: a server span for an inbound call,
// whose parent is the caller's span when the request carried its trace
// context, and a client span for an outbound one, whose parent is ctx's
// span (a handler's ctx has its call's). It puts the span in the context
// it returns, and the trace context in an outbound call's call.
//
// A notify that a pubsub.Server with Options.Trace makes (ctx carries a
// [pubsub.Publication]) follows the messaging semantic conventions
// instead: the Server hands the event on to a subscriber, so its span is a
// send (messaging.operation.type "send", messaging.operation.name
// "notify", messaging.system [MessagingSystem], messaging.destination.name
// the topic, besides the RPC attributes), of kind client (the event's
// creation context is the publish's span, not this one), named "notify"
// (topics are not known to be few, so not in the name), the root of a
// trace of its own with a link to the publish's span. The subscriber's
// handling of it is its child.
func (o *Observer) CallStarted(ctx context.Context, c *wsrpc.Conn, call *wsrpc.CallInfo) context.Context {
	if !o.opts.Filter(call.Method, call.Dir) {
		return ctx
	}
	kind := kindClient
	opts := make([]trace.SpanStartOption, 0, 4)
	attrs := spanAttrs(c, call)
	if call.Dir == wsrpc.Outbound && call.Method == notifyMethod {
		if pub, ok := pubsub.PublicationFromContext(ctx); ok {
			attrs = append(attrs, messagingSend, messagingNotify, messagingSystem, semconv.MessagingDestinationName(pub.Topic))
			opts = append(opts, newRoot)
			if sc := o.publishSpan(ctx, pub); sc.IsValid() {
				opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
			}
		}
	}
	if call.Dir == wsrpc.Inbound {
		kind = kindServer
		// The connection's context has no span of ours: a call without a
		// trace context starts a trace.
		opts = append(opts, newRoot)
		if call.TraceParent != "" {
			remote := o.prop.Extract(ctx, &carrier{call.TraceParent, call.TraceState})
			if sc := trace.SpanContextFromContext(remote); sc.IsValid() {
				if o.opts.PublicEndpoint {
					opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
				} else {
					ctx, opts = remote, opts[:0]
				}
			}
		}
	}
	opts = append(opts, kind, trace.WithTimestamp(call.Start), trace.WithAttributes(attrs...))
	ctx, span := o.tracer.Start(ctx, call.Method, opts...)
	if call.Dir == wsrpc.Outbound && (call.Extension || o.opts.AlwaysPropagate) && span.SpanContext().IsValid() {
		var cr carrier
		o.prop.Inject(ctx, &cr)
		call.TraceParent, call.TraceState = cr.parent, cr.state
	}
	return ctx
}

// The messaging attributes of every notify span, made once.
var (
	messagingSend   = semconv.MessagingOperationTypeSend
	messagingNotify = semconv.MessagingOperationName(notifyMethod)
	messagingSystem = semconv.MessagingSystemKey.String(MessagingSystem)
)

// publishSpan returns the span context of the publish whose event ctx's
// notify delivers: the one pubsub's Options.Trace extracted into ctx, or
// else parsed from the Publication.
func (o *Observer) publishSpan(ctx context.Context, pub pubsub.Publication) trace.SpanContext {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		return sc
	}
	if pub.TraceParent == "" {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(o.prop.Extract(ctx, &carrier{pub.TraceParent, pub.TraceState}))
}

// spanAttrs returns the attributes of a call's span when it starts.
func spanAttrs(c *wsrpc.Conn, call *wsrpc.CallInfo) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 7)
	attrs = append(attrs, semconv.RPCSystemNameJSONRPC, semconv.RPCMethod(call.Method), ConnIDKey.String(c.ID()))
	if addr := c.RemoteAddr(); addr != nil {
		host, port := splitAddr(addr)
		attrs = append(attrs, semconv.NetworkPeerAddress(host))
		if port > 0 {
			attrs = append(attrs, semconv.NetworkPeerPort(port))
		}
		if call.Dir == wsrpc.Outbound {
			attrs = append(attrs, semconv.ServerAddress(host))
			if port > 0 {
				attrs = append(attrs, semconv.ServerPort(port))
			}
		}
	}
	return attrs
}

// splitAddr returns the host and port of a network address; port is 0 if
// it has none.
func splitAddr(a net.Addr) (string, int) {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String(), t.Port
	}
	s := a.String()
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return s, 0
	}
	p, _ := strconv.Atoi(port)
	return host, p
}

// CallEnded ends the call's span, with its outcome, and records its
// duration in rpc.server.call.duration (inbound) or
// rpc.client.call.duration (outbound).
func (o *Observer) CallEnded(ctx context.Context, _ *wsrpc.Conn, call *wsrpc.CallInfo) {
	if !o.opts.Filter(call.Method, call.Dir) {
		return
	}
	span := trace.SpanFromContext(ctx)
	var set attribute.Set
	if call.Err == nil {
		set = o.okSet(call.Dir, call.Method)
	} else {
		status, errType := outcome(call)
		attrs := make([]attribute.KeyValue, 0, 4)
		attrs = append(attrs, semconv.ErrorTypeKey.String(errType))
		if status != "" {
			attrs = append(attrs, semconv.RPCResponseStatusCode(status))
		}
		span.SetAttributes(attrs...)
		span.SetStatus(codes.Error, call.Err.Error())
		set = attribute.NewSet(append(attrs, semconv.RPCSystemNameJSONRPC, semconv.RPCMethod(call.Method))...)
	}
	span.End(trace.WithTimestamp(call.Start.Add(call.Duration)))
	secs := call.Duration.Seconds()
	if call.Dir == wsrpc.Inbound {
		o.server.RecordSet(ctx, secs, set)
	} else {
		o.client.RecordSet(ctx, secs, set)
	}
}

// outcome returns the rpc.response.status_code (the error answer's code,
// in decimal; "" when there was no answer) and error.type of a failed
// call.
func outcome(call *wsrpc.CallInfo) (status, errType string) {
	if call.Code != 0 {
		s := strconv.Itoa(int(call.Code))
		return s, s
	}
	switch err := call.Err; {
	case errors.Is(err, wsrpc.ErrConnectionLost):
		return "", "connection_lost"
	case errors.Is(err, wsrpc.ErrClosed):
		return "", "closed"
	case errors.Is(err, wsrpc.ErrNotConnected):
		return "", "not_connected"
	case errors.Is(err, context.DeadlineExceeded):
		return "", "deadline_exceeded"
	case errors.Is(err, context.Canceled):
		return "", "canceled"
	}
	return "", semconv.ErrorTypeOther.Value.AsString()
}
