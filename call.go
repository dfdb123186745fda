package wsrpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/wsrpc/wsrpc/internal/wire"
)

// Caller is implemented by [*Conn] and [*Client]: something whose peer's
// methods can be called.
type Caller interface {
	Call(ctx context.Context, method string, args, result any) error
}

// Call calls method on c's peer with keyword arguments args (a struct, a
// map, a json.RawMessage object, or nil) and returns the result decoded as
// R. Errors are as for [Conn.Call].
func Call[R any](ctx context.Context, c Caller, method string, args any) (R, error) {
	var r R
	err := c.Call(ctx, method, args, &r)
	return r, err
}

type reply struct {
	result []byte
	typ    []byte
	errObj []byte
	err    error
	buf    *buffer
}

// pendingCalls are the calls to the peer waiting for its answer, by call
// id, as net/rpc and jrpc2 keep them: a call is added before its request
// is queued, and whoever takes it out (its answer, its deadline, or the
// connection's end) is the only one to deliver to its waiter.
type pendingCalls struct {
	mu     sync.Mutex // guards the fields below
	calls  map[string]waiter
	closed bool // the connection ended: no call is added any more
	// sweep runs Conn.sweepCalls, which applies the default call timeout
	// to the calls made with Go; sweeping: it is scheduled.
	sweep    *time.Timer
	sweeping bool
	// life is the one long-lived context the Conn watches for the calls
	// that package pubsub makes through internal/fanout (its Server's), with
	// one registration (lifeStop unregisters it) rather than one per call.
	life     context.Context
	lifeStop func() bool
}

// waiter is who waits for a call's answer: the goroutine of a [Conn.Call],
// on its channel ch, or a call made with [Conn.Go], which a completes.
// Exactly one of the two is set.
type waiter struct {
	ch chan reply
	a  *asyncCall
}

// deliver hands r to the waiter, which owns r.buf from then on.
func (w waiter) deliver(r reply) {
	if w.a != nil {
		w.a.complete(r, false)
		return
	}
	w.ch <- r
}

// add registers a call; it returns false if the connection has ended.
func (p *pendingCalls) add(id string, w waiter) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	if p.calls == nil {
		p.calls = make(map[string]waiter)
	}
	p.calls[id] = w
	return true
}

// take removes and returns the call for a raw call id token (the JSON
// string as it came); ok is false if there is none.
func (p *pendingCalls) take(tok []byte) (w waiter, ok bool) {
	if len(tok) < 2 || tok[0] != '"' {
		return waiter{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	key := tok[1 : len(tok)-1]
	w, ok = p.calls[string(key)]
	if !ok {
		s := wire.TokenString(tok) // escaped form of an id
		if w, ok = p.calls[s]; !ok {
			return waiter{}, false
		}
		delete(p.calls, s)
		return w, true
	}
	delete(p.calls, string(key))
	return w, true
}

// forget removes a call; it reports whether the call was still pending (no
// answer or failure was delivered to it).
func (p *pendingCalls) forget(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.calls[id]; ok {
		delete(p.calls, id)
		return true
	}
	return false
}

// failAll closes the set and fails every call in it with err.
func (p *pendingCalls) failAll(err error) {
	p.mu.Lock()
	calls := p.calls
	p.calls, p.closed = nil, true
	if p.sweep != nil {
		p.sweep.Stop()
		p.sweeping = false
	}
	if p.lifeStop != nil {
		p.lifeStop()
		p.lifeStop = nil
	}
	p.mu.Unlock()
	for _, w := range calls {
		w.deliver(reply{err: err})
	}
}

// Call calls method on the peer with keyword arguments args and waits for
// the answer, which it decodes into result with encoding/json.
//
// args is a struct, a map with string keys, a json.RawMessage holding a
// JSON object, or nil for no arguments. result is a pointer, or nil to
// discard the answer.
//
// ctx bounds the wait. If ctx has no deadline, the connection's default
// call timeout applies. The error is nil, or wraps an *[Error] when the peer
// answered with one, ctx's error on timeout or cancellation, [ErrClosed] or
// [ErrConnectionLost]. A call that fails never affects other calls or the
// connection.
func (c *Conn) Call(ctx context.Context, method string, args, result any) error {
	raw, err := encodeArgs(args)
	if err != nil {
		return &callError{method, err}
	}
	return c.call(ctx, method, raw, result, "")
}

func (c *Conn) call(ctx context.Context, method string, args []byte, result any, id string) error {
	r, err := c.roundTrip(ctx, method, args, id)
	if err != nil {
		return err
	}
	return c.finish(method, r, result)
}

// roundTrip sends a request and waits for its reply, whose buffer the
// caller must release with putBuf. The Observer sees it.
func (c *Conn) roundTrip(ctx context.Context, method string, args []byte, id string) (reply, error) {
	obs := c.cfg.Observer
	if obs == nil {
		return c.exchange(ctx, method, args, id, nil)
	}
	ci := newCallInfo(CallInfo{Method: method, Dir: Outbound, Start: time.Now(), RequestBytes: len(args), Extension: c.ext})
	defer freeCallInfo(ci)
	ctx = obs.CallStarted(ctx, c, ci)
	r, err := c.exchange(ctx, method, args, id, ci)
	ci.Duration, ci.Err = time.Since(ci.Start), err
	if err == nil {
		ci.ResponseBytes = len(r.buf.b)
		if e := r.remoteError(); e != nil {
			ci.Err, ci.Code = e, e.Code
		}
	}
	obs.CallEnded(ctx, c, ci)
	return r, err
}

// exchange is roundTrip unobserved; ci, if not nil, is the Observer's
// view of the call, with the trace context to send.
func (c *Conn) exchange(ctx context.Context, method string, args []byte, id string, ci *CallInfo) (reply, error) {
	if method == "" {
		return reply{}, &callError{method, errors.New("empty method name")}
	}
	if _, ok := ctx.Deadline(); !ok && c.cfg.CallTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.CallTimeout)
		defer cancel()
	}
	if err := ctx.Err(); err != nil {
		return reply{}, &callError{method, err}
	}
	if id == "" {
		id = wire.NewCallID()
	}
	ch := c.cfg.replies.get()
	if !c.pending.add(id, waiter{ch: ch}) {
		c.cfg.replies.put(ch)
		return reply{}, &callError{method, &notSentError{c.lockedEndErr()}}
	}

	out := c.newRequestTimeout(ctx, method, args, id, 0, ci)
	if err := c.enqueue(ctx, out); err != nil {
		if !c.pending.forget(id) {
			putBuf((<-ch).buf) // the connection ended meanwhile and failed the call
		}
		c.cfg.replies.put(ch)
		return reply{}, &callError{method, err}
	}
	select {
	case r := <-ch:
		c.cfg.replies.put(ch)
		if r.err != nil {
			return reply{}, &callError{method, r.err}
		}
		return r, nil
	case <-ctx.Done():
		if c.pending.forget(id) {
			c.sendCancel(id)
		} else {
			putBuf((<-ch).buf) // the answer raced the deadline; the deadline wins
		}
		c.cfg.replies.put(ch) // empty: nobody else holds it now
		return reply{}, &callError{method, ctx.Err()}
	}
}

// newRequestTimeout returns the request frame of a call: over the
// extension it carries ctx's deadline, or timeout when ctx has none (zero:
// none); it carries the trace context ci has, if ci is not nil.
func (c *Conn) newRequestTimeout(ctx context.Context, method string, args []byte, id string, timeout time.Duration, ci *CallInfo) *buffer {
	return c.newRequestParts(ctx, method, args, nil, id, timeout, ci)
}

// newRequestParts is newRequestTimeout with the arguments in two parts,
// head then tail.
func (c *Conn) newRequestParts(ctx context.Context, method string, head, tail []byte, id string, timeout time.Duration, ci *CallInfo) *buffer {
	var timeoutMS int64
	if c.ext {
		if dl, ok := ctx.Deadline(); ok {
			timeoutMS = max(1, int64((time.Until(dl)+time.Millisecond-1)/time.Millisecond))
		} else if timeout > 0 {
			timeoutMS = max(1, int64((timeout+time.Millisecond-1)/time.Millisecond))
		}
	}
	var parent, state string
	if ci != nil {
		parent, state = ci.TraceParent, ci.TraceState
	}
	out := getBuf()
	if n := len(head) + len(tail) + len(method) + len(id) + 64; cap(out.b) < n {
		out.b = make([]byte, 0, n) // one allocation, not one per doubling
	}
	out.b = wire.AppendRequestParts(out.b, method, head, tail, id, timeoutMS, parent, state)
	return out
}

// sendCancel tells the peer, over the extension, that the caller of call id
// gave up, if the send queue has room for it now.
func (c *Conn) sendCancel(id string) {
	if c.ext {
		cf := getBuf()
		cf.b = wire.AppendCancel(cf.b, id)
		c.trySend(cf)
	}
}

// replyPool recycles the one-slot channels that carry a call's reply. A
// channel goes back only when it is empty and no longer in the pending map.
// Each Server and Client has its own (config.replies) rather than the
// process one: a channel belongs to the testing/synctest bubble that made
// it, and a goroutine of another bubble, or of none, must not touch it.
type replyPool struct{ pool sync.Pool }

func (p *replyPool) get() chan reply {
	if ch, ok := p.pool.Get().(chan reply); ok {
		return ch
	}
	return make(chan reply, 1)
}

func (p *replyPool) put(ch chan reply) { p.pool.Put(ch) }

func (c *Conn) finish(method string, r reply, result any) error {
	defer putBuf(r.buf)
	if e := r.remoteError(); e != nil {
		return &callError{method, e}
	}
	return decodeResult(method, r.result, result)
}

// decodeResult decodes a call's raw result into result, as [Conn.Call]
// does: result is a pointer, or nil to discard the result. A
// *json.RawMessage gets a copy of raw.
func decodeResult(method string, raw []byte, result any) error {
	if result == nil {
		return nil
	}
	if raw == nil {
		raw = []byte("null")
	}
	if rm, ok := result.(*json.RawMessage); ok {
		*rm = append((*rm)[:0], raw...)
		return nil
	}
	if err := json.Unmarshal(raw, result); err != nil {
		return &callError{method, fmt.Errorf("decode result: %w", err)}
	}
	return nil
}

// remoteError returns the *Error a reply carries, if any.
func (r *reply) remoteError() *Error {
	if r.errObj == nil && string(r.typ) != "error" {
		return nil
	}
	e := &Error{Code: CodeInternalError, Message: "remote error"}
	if r.errObj != nil {
		if err := json.Unmarshal(r.errObj, e); err != nil {
			return &Error{Code: CodeInternalError, Message: "remote error (unreadable error object)"}
		}
	}
	return e
}

// encodeArgs turns a Call's args into a raw JSON object.
func encodeArgs(args any) ([]byte, error) {
	var b []byte
	switch v := args.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		b = v
	case []byte:
		b = v
	default:
		var err error
		if b, err = json.Marshal(args); err != nil {
			return nil, fmt.Errorf("encode arguments: %w", err)
		}
	}
	if len(b) == 0 || string(b) == "null" {
		return nil, nil
	}
	if !wire.IsObject(b) {
		if !json.Valid(b) {
			return nil, errors.New("arguments are not valid JSON")
		}
		return nil, errors.New("arguments must be a JSON object (keyword arguments)")
	}
	return b, nil
}
