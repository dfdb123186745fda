package wsrpc

import (
	"bytes"
	"context"
	"errors"
	"runtime/debug"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/wsrpc/wsrpc/internal/bind"
	"github.com/wsrpc/wsrpc/internal/wire"
)

func (c *Conn) readLoop() error {
	for {
		mt, r, err := c.ws.NextReader()
		if err != nil {
			return err
		}
		buf := getBuf()
		if err := buf.readFrom(r); err != nil {
			putBuf(buf)
			return err
		}
		buf.readAt = c.touch()
		if obs := c.cfg.Observer; obs != nil {
			obs.Frame(c, Inbound, len(buf.b))
		}
		c.handleFrame(mt, buf)
	}
}

func (c *Conn) handleFrame(mt int, buf *buffer) {
	var f wire.Frame
	err := wire.Decode(buf.b, &f)
	if err == nil && mt == websocket.TextMessage {
		if buf.utf8 = utf8.Valid(buf.b); !buf.utf8 {
			err = errInvalidUTF8
		}
	}
	if err != nil {
		c.badFrame(&f, err)
		putBuf(buf)
		return
	}
	switch f.Kind {
	case wire.KindRequest:
		c.handleRequest(&f, buf)
	case wire.KindResponse:
		c.handleResponse(&f, buf)
	case wire.KindCancel:
		if c.ext {
			c.cancelRunning(f.CallID)
		}
		putBuf(buf)
	}
}

var (
	errInvalidUTF8          = errors.New("text frame is not valid UTF-8")
	errCanceledByPeer error = &sentinelError{msg: "call canceled by the caller"}
)

// badFrame answers a frame that could not be used, where it has a request to
// answer, and reports it.
func (c *Conn) badFrame(f *wire.Frame, err error) {
	code := CodeInvalidRequest
	var inv *wire.InvalidError
	switch {
	case errors.Is(err, wire.ErrParse), errors.Is(err, errInvalidUTF8):
		code = CodeParseError
	case errors.As(err, &inv) && inv.Params:
		code = CodeInvalidParams
	}
	c.reportFromReader(errorf("%w: %v", ErrBadFrame, err))
	if f.Kind == wire.KindResponse {
		// A broken answer to one of our calls fails that call, clearly.
		if w, ok := c.pending.take(f.CallID); ok {
			w.deliver(reply{err: errorf("%w: %v", ErrBadFrame, err)})
		}
		return
	}
	c.sendError(f.CallID, code, err.Error())
}

func (c *Conn) handleRequest(f *wire.Frame, in *buffer) {
	switch string(f.Method) {
	case "_ping_":
		c.sendResult(f.CallID, `"pong"`, "str")
		putBuf(in)
		return
	case "_get_channel_id_":
		c.sendResult(f.CallID, `"`+c.id+`"`, "str")
		putBuf(in)
		return
	}
	var m *method
	if f.Method[0] != '_' {
		m = c.cfg.mux.lookup(f.Method)
	}
	if m == nil {
		msg := "method not found: " + string(f.Method)
		if obs := c.cfg.Observer; obs != nil {
			obs.CallRefused(c, string(f.Method), &Error{Code: CodeMethodNotFound, Message: msg})
		}
		c.sendError(f.CallID, CodeMethodNotFound, msg)
		putBuf(in)
		return
	}
	ctx := c.ctx
	var cc *callCtx
	c.mu.Lock()
	size := int64(cap(in.b))
	if c.draining || c.closing || c.calls >= c.cfg.MaxConcurrentCalls ||
		c.cfg.MaxCallBytes > 0 && c.calls > 0 && c.callBytes+size > c.cfg.MaxCallBytes {
		reason := ErrShuttingDown
		if !c.draining && !c.closing {
			reason = ErrTooManyCalls
		}
		c.mu.Unlock()
		if obs := c.cfg.Observer; obs != nil {
			obs.CallRefused(c, string(f.Method), reason)
		}
		// The sentinel's answer: its text, without the prefix.
		c.sendError(f.CallID, CodeServerError, textOf(reason))
		putBuf(in)
		return
	}
	c.calls++
	c.callBytes += size
	c.wg.Add(1)
	if c.ext && (f.CallID != nil || f.TimeoutMS > 0) {
		cc = &callCtx{conn: c.ctx, id: f.CallID, idx: -1}
		if f.TimeoutMS > 0 {
			cc.deadline = time.Now().Add(time.Duration(f.TimeoutMS) * time.Millisecond)
		}
		if f.CallID != nil {
			cc.idx = len(c.running)
			c.running = append(c.running, cc)
		}
		ctx = cc
	}
	c.mu.Unlock()
	t := taskPool.Get().(*callTask)
	t.c, t.ctx, t.cc, t.m, t.f, t.in = c, ctx, cc, m, *f, in
	if m.ordered {
		c.mu.Lock()
		if c.orderedBusy {
			c.ordered = append(c.ordered, t) // nextOrdered runs it in turn
			c.mu.Unlock()
			return
		}
		c.orderedBusy = true
		c.turn = t
		c.mu.Unlock()
	}
	c.cfg.workers.run(t)
}

// nextOrdered returns the next call of an ordered method waiting for its
// turn, once one has returned, or nil when none waits.
func (c *Conn) nextOrdered() *callTask {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nextOrderedLocked()
}

// nextOrderedLocked is nextOrdered with c.mu held.
func (c *Conn) nextOrderedLocked() *callTask {
	if len(c.ordered) == 0 {
		c.orderedBusy = false
		c.ordered = nil
		c.turn = nil
		return nil
	}
	t := c.ordered[0]
	c.ordered[0] = nil
	c.ordered = c.ordered[1:]
	c.turn = t
	return t
}

// PassTurn, called by the handler of an ordered method ([Mux.HandleOrdered])
// while it runs, lets the next ordered call of the connection start now
// instead of once the handler returned: what the handler does after it
// runs concurrently with the ordered calls behind it. A handler that must
// take effect in arrival order but then waits (a pub/sub publish that
// queues its event, then waits for the subscribers to take it) calls it
// once the part that must be in order is done. ctx is the handler's.
//
// Call it at most once, and only from the handler of an ordered method:
// it passes on the turn of whichever ordered call of the connection holds
// it, so a second call, or one from another handler, would let the
// ordered call running then overlap the next one.
func PassTurn(ctx context.Context) {
	c := ConnFromContext(ctx)
	if c == nil {
		return
	}
	c.mu.Lock()
	t := c.turn
	if t == nil {
		c.mu.Unlock()
		return
	}
	t.passed = true
	next := c.nextOrderedLocked()
	c.mu.Unlock()
	if next != nil {
		c.cfg.workers.run(next)
	}
}

// cancelRunning cancels the handler serving the call id token, if any.
func (c *Conn) cancelRunning(tok []byte) {
	id := wire.TokenString(tok)
	c.mu.Lock()
	var target *callCtx
	for _, cc := range c.running {
		if bytes.Equal(cc.id, tok) || wire.TokenString(cc.id) == id {
			target = cc
			break
		}
	}
	c.mu.Unlock()
	if target != nil {
		target.cancel(context.Canceled, errCanceledByPeer)
	}
}

// runHandler runs one call and queues its answer. cc is the call's context
// over the extension, or nil. info is where the call's CallInfo goes, if
// there is an Observer: the caller's, valid until runHandler returns.
func (c *Conn) runHandler(ctx context.Context, cc *callCtx, m *method, f *wire.Frame, in *buffer, info *CallInfo) {
	defer c.wg.Done()
	var ci *CallInfo
	obs := c.cfg.Observer
	if obs != nil {
		ci = info
		// Start is when the request arrived, from the clock read then:
		// the connection's start plus the monotonic time since.
		*ci = CallInfo{Method: m.name, Dir: Inbound, Start: c.start.Add(in.readAt), RequestBytes: len(in.b), Extension: c.ext,
			TraceParent: string(f.TraceParent), TraceState: string(f.TraceState)}
		ctx = obs.CallStarted(ctx, c, ci)
	}
	out := getBuf()
	out.b = wire.AppendResponseStart(out.b)
	h := bind.Hint{UTF8: in.utf8, Str: f.Str, StrEnd: f.StrEnd, StrEsc: f.StrEsc}
	typ, err := c.invoke(ctx, m, f, h, out)
	var code Code
	if err == nil {
		out.b = wire.AppendResponseEnd(out.b, typ, f.CallID)
	} else {
		we, chosen := wireError(err)
		if !chosen {
			c.report(errorf("method %q: %w", f.Method, err))
			we = &Error{Code: CodeInternalError, Message: "internal error"}
			if c.cfg.SendErrorDetails {
				we.Message = err.Error()
			}
		}
		code = we.Code
		out.b = wire.AppendError(out.b[:0], f.CallID, int(we.Code), we.Message, we.Data)
	}
	if ci != nil {
		ci.Duration, ci.Err, ci.Code, ci.ResponseBytes = time.Since(ci.Start), err, code, len(out.b)
		defer obs.CallEnded(ctx, c, ci)
	}
	// The caller gave up: it canceled, or the deadline it sent passed and
	// the handler failed for it. It waits for no answer.
	peerGaveUp := cc != nil && (cc.endedBy(errCanceledByPeer) ||
		err != nil && errors.Is(cc.Err(), context.DeadlineExceeded))
	// When no writer runs, this goroutine writes the answer itself, once
	// the call is accounted for: a hand-off to a writer goroutine would
	// cost a wake-up on the way out of every call.
	write := false
	if peerGaveUp {
		putBuf(out)
		out = nil
	} else if queued, ended, start, _ := c.queue(out, true, false); queued || ended {
		out, write = nil, start
	}
	// out != nil: the send queue is full. The call waits for room holding
	// its answer instead of its request, which goes now: the answer counts
	// against MaxCallBytes in the request's place, so that answers waiting
	// to be queued are bounded as the requests were.
	var waitSize int64
	c.mu.Lock()
	c.callBytes -= int64(cap(in.b))
	if out != nil {
		waitSize = int64(cap(out.b))
		c.callBytes += waitSize
	} else {
		c.endCallLocked()
	}
	if cc != nil && cc.idx >= 0 {
		last := len(c.running) - 1
		c.running[cc.idx] = c.running[last]
		c.running[cc.idx].idx = cc.idx
		c.running[last] = nil
		c.running = c.running[:last]
	}
	c.mu.Unlock()
	putBuf(in) // f and cc.id alias in: done with them
	if cc != nil {
		cc.cancel(context.Canceled, nil) // the handler returned
	}
	if write {
		c.writeLoop()
	}
	if out != nil {
		c.send(out)
		c.mu.Lock()
		c.callBytes -= waitSize
		c.endCallLocked()
		c.mu.Unlock()
	}
}

// endCallLocked counts a call as ended, and tells a drain waiting for the
// last one. c.mu held.
func (c *Conn) endCallLocked() {
	c.calls--
	if c.calls == 0 && c.drained != nil {
		close(c.drained)
		c.drained = nil
	}
}

// invoke runs the handler, turning a panic into an error.
func (c *Conn) invoke(ctx context.Context, m *method, f *wire.Frame, h bind.Hint, out *buffer) (typ string, err error) {
	defer func() {
		if p := recover(); p != nil {
			name := string(f.Method)
			pe := &PanicError{Method: name, Value: p, Stack: debug.Stack()}
			c.logger().Error("handler panicked", "method", name, "panic", p, "stack", string(pe.Stack))
			c.report(pe)
			err = &Error{Code: CodeInternalError, Message: "internal error: method " + strconv.Quote(name) + " failed"}
		}
	}()
	// An unencodable result (errUnencodable) is an internal error like any
	// other: runHandler reports it and the peer sees "internal error" unless
	// the server opted in to details.
	out.b, typ, err = m.serve(ctx, f.Args, h, out.b)
	return typ, err
}

func (c *Conn) sendResult(callID []byte, result, typ string) {
	out := getBuf()
	out.b = wire.AppendResponseStart(out.b)
	out.b = append(out.b, result...)
	out.b = wire.AppendResponseEnd(out.b, typ, callID)
	c.send(out)
}

// sendError answers call callID with an error object without data.
func (c *Conn) sendError(callID []byte, code Code, msg string) {
	out := getBuf()
	out.b = wire.AppendError(out.b, callID, int(code), msg, nil)
	c.send(out)
}

func (c *Conn) handleResponse(f *wire.Frame, buf *buffer) {
	w, ok := c.pending.take(f.CallID)
	if !ok {
		c.logger().Debug("response to no pending call", "call_id", f.ID())
		putBuf(buf)
		return
	}
	w.deliver(reply{result: f.Result, typ: f.ResultType, errObj: f.Error, buf: buf})
}

// report passes an error no caller waits for to the OnError hook.
func (c *Conn) report(err error) {
	if c.cfg.OnError != nil {
		c.cfg.OnError(c, err)
	}
}

// reportFromReader is report for errors found by the read loop.
func (c *Conn) reportFromReader(err error) {
	c.logger().Debug("bad frame", "err", err) // the peer's doing, and OnError gets it
	c.inHook.Add(1)
	defer c.inHook.Add(-1)
	c.report(err)
}
