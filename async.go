package wsrpc

import (
	"context"
	"errors"
	"time"
	"unsafe"

	"github.com/wsrpc/wsrpc/internal/fanout"
	"github.com/wsrpc/wsrpc/internal/wire"
)

// Go calls method on the peer as [Conn.Call] does, but does not wait for
// the answer: it queues the request and returns, and done receives the
// outcome later. A call in flight costs no goroutine, so thousands can be
// in flight at once, and the calls one goroutine makes with Go (or Call)
// reach the peer in the order it made them.
//
// Go blocks only while the connection's send queue is full
// ([ConnOptions].SendQueue and SendQueueBytes), and at most until ctx
// ends: the queue bounds the requests waiting to be written. Go does not
// bound the calls waiting for their answers; a caller that makes many
// bounds them itself, for example with a semaphore that done releases.
//
// If Go returns an error, done is never called: the call was not made,
// because the method name or the arguments are invalid (args as for Call),
// ctx had ended, or the connection had ended ([ErrClosed],
// [ErrConnectionLost]). Otherwise done is called exactly once, with the
// answer or with why there is none, as an error that Call would return: a
// wrapped *[Error] when the peer answered with one; ctx's error when ctx
// ended first (over the negotiated extension, the peer's handler is then
// canceled, as for Call); [ErrConnectionLost] or [ErrClosed] when the
// connection ended, also while Go waited for room. ctx bounds the call as
// it bounds Call: if it has no deadline, the connection's default call
// timeout applies. Watching ctx costs no goroutine until it ends
// ([context.AfterFunc]) when ctx comes from the context package or is a
// handler's; a Context of another kind costs one per call. done may be nil
// to discard the outcome.
//
// done runs on the connection's reader goroutine, or, when ctx ends first,
// on a goroutine of its own. While the reader runs it, no frame is read:
// done must be quick and must not block. In particular it must not wait
// for another call on the same connection (Call would wait for the reader
// that runs done); to do more, hand the outcome to a goroutine of your own.
// It may close the connection or the client ([Conn.Close], [Client.Close]),
// and it may call Go, which blocks it while the send queue is full. The done functions of different
// calls may run concurrently; those the reader runs run one at a time, in
// the order the answers arrived. All have returned when [Conn.Done] is
// closed. The [Reply] is valid only until done returns.
//
// Go takes a function rather than returning a value with a channel to
// receive from, as net/rpc's Client.Go does: the reader hands each answer
// to done as it arrives, with no channel to size (net/rpc drops answers
// that find their Done channel full) and no copy of the result, which done
// decodes straight from the frame it arrived in.
func (c *Conn) Go(ctx context.Context, method string, args any, done func(*Reply)) error {
	raw, err := encodeArgs(args)
	if err != nil {
		return &callError{method, err}
	}
	return c.goCall(ctx, method, raw, done)
}

// goCall makes a call with Go; the Observer sees it, as it sees Call's.
func (c *Conn) goCall(ctx context.Context, method string, args []byte, done func(*Reply)) error {
	a := &asyncCall{c: c, method: method, done: done}
	if obs := c.cfg.Observer; obs != nil {
		a.ci = &CallInfo{Method: method, Dir: Outbound, Start: time.Now(), RequestBytes: len(args), Extension: c.ext}
		ctx = obs.CallStarted(ctx, c, a.ci)
		a.octx = ctx
	}
	err := c.startGo(ctx, a, args)
	if err != nil {
		a.observe(reply{}, err)
	}
	return err
}

// startGo registers a, then queues its request. Once the call is in the
// pending calls, whoever takes it out of them completes it: startGo itself
// only when it takes it back to return an error.
func (c *Conn) startGo(ctx context.Context, a *asyncCall, args []byte) error {
	_, err := c.startCall(ctx, a, args, nil, true, nil)
	return err
}

func init() { fanout.Notify = notifyConn }

// notifyConn is fanout.Notify: Go for package pubsub's notifies.
func notifyConn(conn any, life, ctx context.Context, method string, head, tail []byte, wait bool, done fanout.Done, token any) (bool, error) {
	c := conn.(*Conn)
	obs := c.cfg.Observer
	if obs != nil && !wait {
		// The Observer sees each call it is told of end: a call that may
		// find no room is left to the caller's fallback, which waits.
		return false, nil
	}
	a := &asyncCall{c: c, method: method, fan: done, fanToken: token}
	if obs != nil {
		a.ci = &CallInfo{Method: method, Dir: Outbound, Start: time.Now(), RequestBytes: len(head) + len(tail), Extension: c.ext}
		ctx = obs.CallStarted(ctx, c, a.ci)
		a.octx = ctx
	}
	sent, err := c.startCall(ctx, a, head, tail, wait, life)
	if err != nil {
		a.observe(reply{}, err)
	}
	return sent, err
}

// startCall is startGo for arguments in two parts, head then tail. With
// wait false it queues the request only if the send queue has room now,
// and otherwise takes the call back and reports sent false, with no
// error. life, if not nil, is a long-lived context that the Conn watches
// once for all the calls whose ctx ends with it (the same Done channel:
// life itself, or made from it with values only), rather than once per
// call (watchLife).
func (c *Conn) startCall(ctx context.Context, a *asyncCall, head, tail []byte, wait bool, life context.Context) (sent bool, err error) {
	method := a.method
	if method == "" {
		return false, &callError{method, errors.New("empty method name")}
	}
	var timeout time.Duration // the default call timeout, which the sweep applies
	if _, ok := ctx.Deadline(); !ok && c.cfg.CallTimeout > 0 {
		// No context.WithTimeout (a context, a timer and a registration
		// with ctx per call): the connection's sweep expires the call.
		timeout = c.cfg.CallTimeout
		a.deadline = time.Now().Add(timeout)
	}
	if err := ctx.Err(); err != nil {
		a.release()
		return false, &callError{method, err}
	}
	wire.PutCallID(&a.idBytes)
	a.ctx, a.id = ctx, unsafe.String(&a.idBytes[0], len(a.idBytes))
	if ctx.Done() != nil {
		if life != nil && ctx.Done() == life.Done() && c.watchLife(life) {
			a.life = true
		} else {
			a.stop = context.AfterFunc(ctx, a.expire)
		}
	}
	if !c.pending.add(a.id, waiter{a: a}) {
		a.release()
		return false, &callError{method, &notSentError{c.lockedEndErr()}}
	}
	if timeout > 0 {
		c.armSweep(timeout)
	}
	// ctx may have ended before add, when expire found nothing to take.
	err = ctx.Err()
	if err == nil {
		out := c.newRequestParts(ctx, method, head, tail, a.id, timeout, a.ci)
		out.fanout = a.fan != nil // a notify of internal/fanout's
		if wait {
			if err = c.enqueue(ctx, out); err == nil {
				return true, nil
			}
		} else {
			queued, ended, _, _ := c.queue(out, false, false)
			if queued {
				return true, nil
			}
			if !ended {
				putBuf(out)
				if c.pending.forget(a.id) {
					a.release()
					return false, nil // no room: the caller waits for it another way
				}
				return true, nil // expire or failAll took the call
			}
			err = c.lockedEndErr()
		}
	}
	if c.pending.forget(a.id) {
		a.release()
		return false, &callError{method, err}
	}
	return true, nil // expire or failAll took the call, and tell done why it failed
}

// watchLife makes the Conn watch ctx, a long-lived context, for the calls
// made through internal/fanout whose contexts end with it: once, with one
// registration that expires all of them when ctx ends (expireLife). It
// reports false if the Conn watches another context already (the caller
// watches ctx itself).
func (c *Conn) watchLife(ctx context.Context) bool {
	p := &c.pending
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.life == nil && !p.closed {
		p.life = ctx
		p.lifeStop = context.AfterFunc(ctx, c.expireLife)
	}
	return p.life == ctx
}

// expireLife runs when the context of watchLife ends: it completes every
// call made with it that still waits, as expire does for one call. A call
// added after it ran finds its context ended (startCall checks it after
// adding the call) and is taken back.
func (c *Conn) expireLife() {
	if !c.join() {
		return // the connection has ended: failAll completes the calls
	}
	defer c.wg.Done()
	p := &c.pending
	var expired []*asyncCall
	p.mu.Lock()
	for id, w := range p.calls {
		if w.a != nil && w.a.life {
			delete(p.calls, id)
			expired = append(expired, w.a)
		}
	}
	p.mu.Unlock()
	for _, a := range expired {
		c.sendCancel(a.id)
		a.complete(reply{err: a.ctx.Err()}, true)
	}
}

// asyncCall is a call made with [Conn.Go], waiting in the pending calls.
// Whoever takes it out of them completes it, once: the reader with the
// answer (handleResponse, badFrame), expire when ctx ends first, or failAll
// when the connection ends. It is not recycled: expire may still be
// running when another has completed the call, and its id aliases
// idBytes, so that a reused record would change the id of a call in
// flight.
type asyncCall struct {
	c      *Conn
	method string
	id     string
	ctx    context.Context // the caller's
	// deadline is when the connection's default call timeout ends the
	// call (ctx had no deadline; the sweep applies it); zero: ctx's
	// deadline, or none, applies. Read-only once the call is pending.
	deadline time.Time
	stop     func() bool  // unregisters expire; nil if ctx never ends or life is set
	life     bool         // ctx is the one the Conn watches for many calls (watchLife)
	done     func(*Reply) // nil: the outcome is discarded
	fan      fanout.Done  // instead of done: told the outcome's error, with fanToken (internal/fanout)
	fanToken any
	reply    Reply

	ci   *CallInfo       // what the Observer sees; nil without one
	octx context.Context // the context the Observer's CallStarted returned

	// idBytes holds id's bytes (unsafe.String): the id costs no
	// allocation of its own. Written once, before id is set.
	idBytes [32]byte
}

// release stops watching a's context, before expire ran or once it has.
func (a *asyncCall) release() {
	if a.stop != nil {
		a.stop()
	}
}

// expire runs when the call's context ends, on a goroutine of the context
// package's: it completes the call if it still waits, and cancels it on
// the peer. The Conn counts it in c.wg while it may run done.
func (a *asyncCall) expire() {
	c := a.c
	if !c.join() {
		// The connection has ended: failAll completes the call, unless
		// goCall takes it back.
		return
	}
	defer c.wg.Done()
	if !c.pending.forget(a.id) {
		return // answered, failed, or taken back meanwhile
	}
	c.sendCancel(a.id)
	a.complete(reply{err: a.ctx.Err()}, true)
}

// armSweep makes sure a sweep will run for a call just added with the
// default call timeout d: if none is scheduled, the first runs when that
// call's time is up. The sweep is scheduled only while such calls wait.
func (c *Conn) armSweep(d time.Duration) {
	p := &c.pending
	p.mu.Lock()
	if !p.sweeping && !p.closed {
		p.sweeping = true
		if p.sweep == nil {
			p.sweep = time.AfterFunc(d, c.sweepCalls)
		} else {
			p.sweep.Reset(d)
		}
	}
	p.mu.Unlock()
}

// sweepCalls expires the pending calls made with Go whose default call
// timeout has passed, as expire does for a call whose context ended, and
// schedules the next sweep for the earliest deadline left, but not sooner
// than a sixteenth of the call timeout from now: a call's timeout ends it
// at most that much late. Each call costs the sweep a look at each pass;
// an answered call costs nothing, being no longer pending.
func (c *Conn) sweepCalls() {
	p := &c.pending
	if !c.join() {
		// The connection has ended: failAll completes the calls.
		p.mu.Lock()
		p.sweeping = false
		p.mu.Unlock()
		return
	}
	defer c.wg.Done()
	now := time.Now()
	var expired []*asyncCall
	var next time.Time
	p.mu.Lock()
	for id, w := range p.calls {
		a := w.a
		if a == nil || a.deadline.IsZero() {
			continue
		}
		if !a.deadline.After(now) {
			delete(p.calls, id)
			expired = append(expired, a)
		} else if next.IsZero() || a.deadline.Before(next) {
			next = a.deadline
		}
	}
	if next.IsZero() || p.closed {
		p.sweeping = false
	} else {
		p.sweep.Reset(max(next.Sub(now), c.cfg.CallTimeout/16))
	}
	p.mu.Unlock()
	for _, a := range expired {
		if a.stop != nil {
			a.stop() // ctx has not ended: expire must not run
		}
		c.sendCancel(a.id)
		a.complete(reply{err: context.DeadlineExceeded}, true)
	}
}

// complete tells the Observer and done the outcome r, then releases
// r.buf. expired says that expire calls it: its context has ended.
func (a *asyncCall) complete(r reply, expired bool) {
	if !expired {
		a.release()
	}
	var err error
	remote := r.remoteError()
	if r.err != nil {
		err = &callError{a.method, r.err}
	} else if remote != nil {
		err = &callError{a.method, remote}
	}
	if a.ci != nil {
		if remote != nil {
			a.observe(r, remote)
		} else {
			a.observe(r, err)
		}
	}
	if a.done != nil || a.fan != nil {
		if !expired {
			// On the reader, as a hook is: Close from done must not wait
			// for the reader.
			a.c.inHook.Add(1)
			defer a.c.inHook.Add(-1)
		}
		if a.fan != nil {
			a.fan.NotifyDone(a.fanToken, err)
			putBuf(r.buf)
			return
		}
		rp := &a.reply
		rp.method, rp.err, rp.live = a.method, err, true
		if err == nil {
			rp.result = r.result
		}
		a.done(rp)
		rp.result, rp.live = nil, false
	}
	putBuf(r.buf)
}

// observe tells the Observer, if any, that the call ended with err (an
// *Error when the peer answered with one), r being its answer if it got
// one.
func (a *asyncCall) observe(r reply, err error) {
	ci := a.ci
	if ci == nil {
		return
	}
	ci.Duration, ci.Err = time.Since(ci.Start), err
	if r.buf != nil {
		ci.ResponseBytes = len(r.buf.b)
	}
	if e, ok := err.(*Error); ok {
		ci.Code = e.Code
	}
	a.c.cfg.Observer.CallEnded(a.octx, a.c, ci)
}

// Reply is the outcome of a call made with [Conn.Go] or [Client.Go], as its
// done function receives it. It is valid only until done returns: the
// result is read from the frame the answer arrived in, which is then
// reused. Decode it, or copy what is needed, within done.
type Reply struct {
	method string
	err    error
	result []byte // the raw JSON result, in the answer's frame
	live   bool   // done has not returned: result may be read
}

// errReplyUsed is Decode's error once its done function has returned.
var errReplyUsed = errors.New("reply decoded after its done function returned")

// Err returns the call's error: nil if the peer answered with a result,
// else an error as [Conn.Call] returns it. Unlike Decode, Err may be called
// after done returned.
func (r *Reply) Err() error { return r.err }

// Decode returns the call's error, as Err does, or else decodes the result
// into result as [Conn.Call] does: result is a pointer, or nil to discard
// the result, and a *json.RawMessage gets a copy of the raw JSON. It must
// be called before done returns; after, it returns an error.
func (r *Reply) Decode(result any) error {
	if r.err != nil {
		return r.err
	}
	if !r.live {
		return &callError{r.method, errReplyUsed}
	}
	return decodeResult(r.method, r.result, result)
}
