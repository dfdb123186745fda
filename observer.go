package wsrpc

import (
	"context"
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
// are set when it starts, the others when it ends.
type CallInfo struct {
	Method       string
	Dir          Direction
	Start        time.Time
	RequestBytes int  // the request frame's size
	Extension    bool // the peer negotiated the wsrpc.v1 extension (PROTOCOL.md)

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
