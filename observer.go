package wsrpc

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Observer watches what connections do, for metrics, traces and logs: set
// one as [ConnOptions].Observer, on a server or a client. Nil means off,
// and off costs nothing on the hot path. Embed [NopObserver] to implement
// only some of the methods.
//
// The methods are called synchronously from the connections' goroutines,
// concurrently for different connections and calls. They must return
// quickly and must not block, nor wait for the connection (a call to the
// peer from an Observer method would deadlock the reader).
type Observer interface {
	// ConnOpened is called once per connection, when it is up, before
	// OnConnect.
	ConnOpened(c *Conn)
	// ConnClosed is called once per connection, when it has ended and its
	// handlers have returned, before OnDisconnect. cause is as for
	// OnDisconnect: ErrClosed when this side closed it.
	ConnClosed(c *Conn, cause error)

	// CallStarted is called when a call starts: an inbound one (from the
	// peer) once it is accepted, before its handler runs; an outbound one
	// before its request is queued. The context it returns becomes the
	// handler's (inbound) or goes with the call (outbound): a tracer puts
	// its span there. It must return ctx or a context derived from it.
	CallStarted(ctx context.Context, c *Conn, call *CallInfo) context.Context
	// CallEnded is called once per started call, with the context that
	// CallStarted returned and the call's outcome filled in: for an
	// inbound call once its answer is queued (or dropped), for an
	// outbound one once its answer arrived or it failed.
	CallEnded(ctx context.Context, c *Conn, call *CallInfo)
	// CallRefused is called for an inbound call answered without running
	// a handler: an unknown method (an *Error with CodeMethodNotFound), a
	// call over MaxConcurrentCalls or MaxCallBytes ([ErrTooManyCalls]), or
	// one arriving while the server shuts down ([ErrShuttingDown]).
	CallRefused(c *Conn, method string, reason error)

	// Frame is called for each data frame read (Inbound) or written
	// (Outbound), with its size in bytes.
	Frame(c *Conn, dir Direction, size int)
	// Queue is called when the send queue of c changes: frames join it
	// (frames and bytes positive) or leave it (negative), so that the sum
	// over the calls is the depth. dropped counts frames given up on
	// instead: the connection ended, or a frame sent only if there was
	// room (a ping, a cancel) found none.
	Queue(c *Conn, frames int, bytes int64, dropped int)

	// ConnectTry is called after each try of a Client to connect, on Dial
	// and on every reconnect: try counts from 1 within one connect, and
	// err is nil when it succeeded. url has no query.
	ConnectTry(url string, try int, err error)
}

// Direction tells which way a call or a frame goes.
type Direction int8

// The directions, from this side's point of view.
const (
	Inbound  Direction = iota + 1 // from the peer: a call it made, a frame read
	Outbound                      // to the peer: a call this side made, a frame written
)

func (d Direction) String() string {
	switch d {
	case Inbound:
		return "inbound"
	case Outbound:
		return "outbound"
	}
	return "unknown"
}

// CallInfo describes one call to an [Observer]: the fields above Duration
// are set when it starts, the others when it ends. It is valid from
// CallStarted until CallEnded returns, and is reused after that: an
// Observer that needs it later keeps a copy, not the pointer.
type CallInfo struct {
	Method    string
	Dir       Direction
	Extension bool // the peer negotiated the wsrpc.v1 extension (PROTOCOL.md)
	// Start is when the call started: for an inbound call, when its
	// request arrived (before it waited for a worker); for an outbound
	// one, when it was made. It has a monotonic reading, so that
	// Start.Add(Duration) is when it ended; an inbound call's is the
	// connection's start plus the monotonic time since, which a step of
	// the wall clock during the connection does not move.
	Start        time.Time
	RequestBytes int // the request frame's size

	// TraceParent and TraceState are the call's W3C Trace Context, the
	// request's "traceparent" and "tracestate" members (PROTOCOL.md). For
	// an inbound call they hold what the request carried, "" for none
	// (whatever the peer negotiated: a tracer may trust them or not). For
	// an outbound call CallStarted may set them, and the request then
	// carries those that are not "": a tracer sets them only when
	// Extension is true, since a peer that did not negotiate it may not
	// expect them (the Python library ignores them).
	TraceParent, TraceState string

	Duration      time.Duration
	Err           error // nil on success; an *Error when the remote side (inbound: the handler) answered with one
	Code          Code  // the JSON-RPC code of the error answer, or 0
	ResponseBytes int   // the answer frame's size, if there was one
}

// callInfos recycles the CallInfos of the calls made with Call (an inbound
// call's is in its pooled task). Those of Go's calls are allocated: such a
// call may end, on another goroutine, while its request is being built
// from its CallInfo.
var callInfos = sync.Pool{New: func() any { return new(CallInfo) }}

// newCallInfo returns a CallInfo from the pool, set to ci.
func newCallInfo(ci CallInfo) *CallInfo {
	p := callInfos.Get().(*CallInfo)
	*p = ci
	return p
}

// freeCallInfo returns ci to the pool, once CallEnded has returned.
func freeCallInfo(ci *CallInfo) {
	*ci = CallInfo{}
	callInfos.Put(ci)
}

// NopObserver implements every [Observer] method as doing nothing. Embed
// it in an Observer that needs only some of them.
type NopObserver struct{}

// ConnOpened does nothing.
func (NopObserver) ConnOpened(*Conn) {}

// ConnClosed does nothing.
func (NopObserver) ConnClosed(*Conn, error) {}

// CallStarted returns ctx.
func (NopObserver) CallStarted(ctx context.Context, _ *Conn, _ *CallInfo) context.Context {
	return ctx
}

// CallEnded does nothing.
func (NopObserver) CallEnded(context.Context, *Conn, *CallInfo) {}

// CallRefused does nothing.
func (NopObserver) CallRefused(*Conn, string, error) {}

// Frame does nothing.
func (NopObserver) Frame(*Conn, Direction, int) {}

// Queue does nothing.
func (NopObserver) Queue(*Conn, int, int64, int) {}

// ConnectTry does nothing.
func (NopObserver) ConnectTry(string, int, error) {}

// JoinObservers returns an Observer that tells each of obs, in order, of
// everything: for a [Server] or [Client] watched by several (Prometheus
// and OpenTelemetry, say). Each CallStarted gets the context the one
// before returned, and each CallEnded, in the reverse order, the context
// the last CallStarted returned, which derives from all of theirs. Nil
// Observers are left out; with none left, JoinObservers returns nil, and
// with one, that one.
func JoinObservers(obs ...Observer) Observer {
	var j joined
	for _, o := range obs {
		if o != nil {
			j = append(j, o)
		}
	}
	switch len(j) {
	case 0:
		return nil
	case 1:
		return j[0]
	}
	return j
}

type joined []Observer

func (j joined) ConnOpened(c *Conn) {
	for _, o := range j {
		o.ConnOpened(c)
	}
}

func (j joined) ConnClosed(c *Conn, cause error) {
	for _, o := range j {
		o.ConnClosed(c, cause)
	}
}

func (j joined) CallStarted(ctx context.Context, c *Conn, call *CallInfo) context.Context {
	for _, o := range j {
		ctx = o.CallStarted(ctx, c, call)
	}
	return ctx
}

func (j joined) CallEnded(ctx context.Context, c *Conn, call *CallInfo) {
	for i := len(j) - 1; i >= 0; i-- {
		j[i].CallEnded(ctx, c, call)
	}
}

func (j joined) CallRefused(c *Conn, method string, reason error) {
	for _, o := range j {
		o.CallRefused(c, method, reason)
	}
}

func (j joined) Frame(c *Conn, dir Direction, size int) {
	for _, o := range j {
		o.Frame(c, dir, size)
	}
}

func (j joined) Queue(c *Conn, frames int, bytes int64, dropped int) {
	for _, o := range j {
		o.Queue(c, frames, bytes, dropped)
	}
}

func (j joined) ConnectTry(url string, try int, err error) {
	for _, o := range j {
		o.ConnectTry(url, try, err)
	}
}

// LogCalls returns an Observer that logs every call, both ways, once it
// ended, to logger at level: the message "call" with the keys conn,
// remote, dir, method and duration, and for a failed call code (the error
// answer's, if there was one) and err; and every refused call, as "call
// refused" with conn, remote, method and err. It never logs arguments or
// results. A refused call's code is [ErrorCode] of why it was refused, as
// its caller gets it. Join it with other Observers with [JoinObservers].
func LogCalls(logger *slog.Logger, level slog.Level) Observer {
	return &callLogger{l: logger, level: level}
}

type callLogger struct {
	NopObserver
	l     *slog.Logger
	level slog.Level
}

func (cl *callLogger) CallEnded(ctx context.Context, c *Conn, call *CallInfo) {
	if !cl.l.Enabled(ctx, cl.level) {
		return
	}
	attrs := make([]slog.Attr, 0, 7)
	attrs = append(attrs, slog.String("conn", c.ID()), slog.String("remote", c.RemoteAddr().String()),
		slog.String("dir", call.Dir.String()), slog.String("method", call.Method), slog.Duration("duration", call.Duration))
	if call.Err != nil {
		if call.Code != 0 {
			attrs = append(attrs, slog.Int("code", int(call.Code)))
		}
		attrs = append(attrs, slog.Any("err", call.Err))
	}
	cl.l.LogAttrs(ctx, cl.level, "call", attrs...)
}

func (cl *callLogger) CallRefused(c *Conn, method string, reason error) {
	if !cl.l.Enabled(context.Background(), cl.level) {
		return
	}
	cl.l.LogAttrs(context.Background(), cl.level, "call refused", slog.String("conn", c.ID()),
		slog.String("remote", c.RemoteAddr().String()), slog.String("method", method), slog.Int("code", int(ErrorCode(reason))), slog.Any("err", reason))
}
