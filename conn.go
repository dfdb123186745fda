package wsrpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/wsrpc/wsrpc/internal/bind"
	"github.com/wsrpc/wsrpc/internal/wire"
)

// extProtocol is the WebSocket subprotocol that two wsrpc peers negotiate to
// enable the extensions (deadline propagation and cancellation). A peer that
// does not offer it, such as a Python one, never sees an extension frame.
const extProtocol = "wsrpc.v1"

// ErrKeepAliveTimeout is the cause of a connection that keep-alive found
// dead: nothing was received from the peer within the interval and timeout.
var ErrKeepAliveTimeout = errors.New("wsrpc: keep-alive timeout")

// ErrBadFrame is reported to the OnError hook, wrapped with the reason, for
// every frame from the peer that could not be used. The connection lives on.
var ErrBadFrame = errors.New("wsrpc: bad frame from peer")

// PanicError is reported to the OnError hook when a handler panics. The
// caller gets a [CodeInternalError] response and the connection lives on.
type PanicError struct {
	Method string
	Value  any    // what the handler panicked with
	Stack  []byte // the handler goroutine's stack
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("wsrpc: handler for %q panicked: %v", e.Method, e.Value)
}

// config is what a Conn needs from its Server or Client.
type config struct {
	mux          *Mux
	logger       *slog.Logger
	onConnect    func(context.Context, *Conn) error
	onDisconnect func(*Conn, error)
	onError      func(*Conn, error)
	callTimeout  time.Duration // <= 0: none
	keepAlive    KeepAlive     // Interval <= 0: off
	pingRPC      bool          // keep-alive also calls _ping_ (clients)
	binary       bool
	maxQueue     int   // frames queued to write
	maxQueueSize int64 // their bytes; 0: no limit
	writeTimeout time.Duration
	closeTimeout time.Duration
	workers      *workers
	maxCalls     int   // handlers running at once per connection
	maxCallBytes int64 // request bytes those handlers hold; 0: no limit
	errorDetails bool  // send the text of handlers' plain errors
}

// Conn is one WebSocket connection, on either side. Both sides may call
// methods of the other at any time: calls run concurrently both ways, and a
// handler may call the peer back while the peer's call to it is open.
//
// A handler's context carries its Conn ([ConnFromContext]). A [Client]
// hands out its current Conn with [Client.Conn]. All methods are safe for
// concurrent use.
type Conn struct {
	ws *websocket.Conn
	bc *batchConn // ws's socket
	// direct: a client's data frames are masked in place and written
	// straight to bc (no TLS between), not copied through gorilla's writer.
	direct bool
	id     string
	cfg    *config
	up     *upgrade // server side: the upgrade request
	// identity is what the server's Authenticate returned; set before
	// the connection is served, read-only after.
	identity any
	ext      bool
	start    time.Time

	lastRead atomic.Int64 // time.Since(start) when a frame last arrived

	ctx    context.Context // carries the Conn; canceled when it ends
	cancel context.CancelCauseFunc

	mu           sync.Mutex
	pending      map[string]chan reply
	running      []*callCtx // extension: the handlers a cancel frame may reach
	closing      bool       // ended or ending: no new calls
	closeStarted bool
	cause        error // why the connection ended
	calls        int   // handlers running
	callBytes    int64 // capacity of the request buffers they hold
	draining     bool
	drained      chan struct{}
	ka           *time.Timer

	// wmu guards the send queue: the frames waiting for the writer, and
	// the room they take.
	wmu      sync.Mutex
	wq       []*buffer
	wspare   []*buffer
	wrunning bool
	wclosed  bool
	qframes  int           // data frames queued or being written
	qbytes   int64         // their bytes (buffer capacity)
	room     chan struct{} // closed when room frees up; made by a waiter

	werr      error // owned by the running writer
	closeSent bool  // owned by the running writer: no data frame may follow

	inHook     atomic.Int32 // reader is running a hook
	wg         sync.WaitGroup
	readerDone lazyDone // closed when the read loop has ended
	done       lazyDone // closed when everything has ended
}

type reply struct {
	result []byte
	typ    []byte
	errObj []byte
	err    error
	buf    *buffer
}

type connKey struct{}

// ConnFromContext returns the connection whose call a handler is serving,
// or nil if ctx is not a handler's context.
func ConnFromContext(ctx context.Context) *Conn {
	c, _ := ctx.Value(connKey{}).(*Conn)
	return c
}

func newConn(ws *websocket.Conn, cfg *config, up *upgrade) *Conn {
	c := &Conn{
		ws:    ws,
		bc:    batchOf(ws.NetConn()),
		id:    wire.NewCallID(),
		cfg:   cfg,
		up:    up,
		ext:   ws.Subprotocol() == extProtocol,
		start: time.Now(),
	}
	c.direct = up == nil && c.bc != nil && ws.NetConn() == net.Conn(c.bc)
	if c.bc != nil {
		// From now on the socket's write deadline is the batchConn's:
		// each write, data or control, direct or through gorilla, gets
		// WriteTimeout from its start.
		c.bc.own(cfg.writeTimeout)
	}
	ctx, cancel := context.WithCancelCause(context.WithValue(context.Background(), connKey{}, c))
	c.ctx, c.cancel = ctx, cancel
	ws.SetPingHandler(func(data string) error {
		c.touch()
		// The deadline bounds only the wait for gorilla's write lock; the
		// socket write is bounded by the batchConn (WriteTimeout).
		err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(pongWait(cfg.writeTimeout)))
		switch {
		case err == nil, errors.Is(err, websocket.ErrCloseSent):
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			return fmt.Errorf("write: %w", err) // the peer stopped reading: the connection ends
		}
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			return nil // gorilla's writer was busy for that long: skip this pong
		}
		return err
	})
	ws.SetPongHandler(func(string) error { c.touch(); return nil })
	return c
}

// pongWait is how long a pong waits for gorilla's write lock.
func pongWait(writeTimeout time.Duration) time.Duration {
	if writeTimeout > 0 {
		return writeTimeout
	}
	return DefaultWriteTimeout
}

// ID returns the connection's channel id: 32 hex digits this side made for
// itself, which the peer learns by calling _get_channel_id_.
func (c *Conn) ID() string { return c.id }

// Request returns the HTTP request that opened the connection on a server:
// its headers, URL and path values (Request().PathValue("client_id")). It
// returns nil on a client's connection. The request must not be modified.
func (c *Conn) Request() *http.Request {
	if c.up == nil {
		return nil
	}
	return c.up.request()
}

// PathValue returns the named path wildcard of the request that opened a
// server's connection (for /ws/{client_id}: PathValue("client_id")), or "".
func (c *Conn) PathValue(name string) string {
	if c.up == nil {
		return ""
	}
	return c.up.pathValue(name)
}

// Identity returns what the server's Authenticate hook returned for the
// request that opened the connection (such as the user who connected), or
// nil on a client's connection and on a server without the hook.
func (c *Conn) Identity() any { return c.identity }

// RemoteAddr returns the peer's network address.
func (c *Conn) RemoteAddr() net.Addr { return c.ws.RemoteAddr() }

// Context returns a context that carries the connection ([ConnFromContext]
// works on it) and is canceled, with the cause, when the connection ends.
// Use it for work that outlives one call, such as a delayed call back to
// the peer; a handler's own context may end as soon as the handler returns.
func (c *Conn) Context() context.Context { return c.ctx }

// Done returns a channel that is closed when the connection has ended and
// all its goroutines, handlers and hooks included, have returned, after
// OnDisconnect.
func (c *Conn) Done() <-chan struct{} { return c.done.wait(&c.mu) }

// lazyDone is a channel closed once, made only when someone waits for it:
// most connections never need it, and idle ones should not pay for it.
type lazyDone struct {
	ch     chan struct{}
	closed bool
}

var closedChan = func() chan struct{} { ch := make(chan struct{}); close(ch); return ch }()

// wait returns the channel; mu guards d.
func (d *lazyDone) wait(mu *sync.Mutex) <-chan struct{} {
	mu.Lock()
	defer mu.Unlock()
	if d.ch == nil {
		if d.closed {
			return closedChan
		}
		d.ch = make(chan struct{})
	}
	return d.ch
}

// close closes the channel; mu guards d.
func (d *lazyDone) close(mu *sync.Mutex) {
	mu.Lock()
	defer mu.Unlock()
	d.closed = true
	if d.ch != nil {
		close(d.ch)
	}
}

// Err returns why the connection ended: [ErrClosed] if this side closed it,
// else the error that ended it. It returns nil while the connection is open.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closing {
		return nil
	}
	return c.cause
}

// logger returns the logger with the connection's attributes. It is made
// when needed, rather than kept, to save memory on idle connections.
func (c *Conn) logger() *slog.Logger {
	return c.cfg.logger.With("conn", c.id, "remote", c.ws.RemoteAddr().String())
}

func (c *Conn) touch() { c.lastRead.Store(int64(time.Since(c.start))) }

// serve runs the connection until it ends: the read loop runs in the
// calling goroutine. onConnect, if not nil, gets the hook's result.
func (c *Conn) serve(onConnect chan<- error) {
	c.touch()
	if c.cfg.onConnect != nil {
		c.wg.Go(func() {
			err := c.cfg.onConnect(c.ctx, c)
			if onConnect != nil {
				onConnect <- err
			}
			if err != nil {
				c.report(fmt.Errorf("wsrpc: on connect: %w", err))
				c.close(websocket.CloseInternalServerErr, "on connect failed", fmt.Errorf("wsrpc: on connect: %w", err))
			}
		})
	} else if onConnect != nil {
		onConnect <- nil
	}
	if ka := c.cfg.keepAlive; ka.Interval > 0 && c.cfg.pingRPC {
		// A client's own timer; a server's connections are swept by its
		// keeper (keepAliveCheck).
		c.mu.Lock()
		c.ka = time.AfterFunc(ka.Interval, c.keepAliveTick)
		c.mu.Unlock()
	}
	err := c.readLoop()
	c.cleanup(err)
}

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
		c.touch()
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
	errInvalidUTF8    = errors.New("text frame is not valid UTF-8")
	errCanceledByPeer = errors.New("wsrpc: call canceled by the caller")
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
	c.reportFromReader(fmt.Errorf("%w: %v", ErrBadFrame, err))
	if f.Kind == wire.KindResponse {
		// A broken answer to one of our calls fails that call, clearly.
		if ch := c.takePending(f.CallID); ch != nil {
			ch <- reply{err: fmt.Errorf("%w: %v", ErrBadFrame, err)}
		}
		return
	}
	out := getBuf()
	out.b = wire.AppendError(out.b, f.CallID, code, err.Error(), nil)
	c.send(out)
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
		out := getBuf()
		out.b = wire.AppendError(out.b, f.CallID, CodeMethodNotFound, "method not found: "+string(f.Method), nil)
		putBuf(in)
		c.send(out)
		return
	}
	ctx := c.ctx
	var cc *callCtx
	c.mu.Lock()
	size := int64(cap(in.b))
	if c.draining || c.closing || c.calls >= c.cfg.maxCalls ||
		c.cfg.maxCallBytes > 0 && c.calls > 0 && c.callBytes+size > c.cfg.maxCallBytes {
		msg := ErrShuttingDown.Error()
		if !c.draining && !c.closing {
			msg = ErrTooManyCalls.Error()
		}
		c.mu.Unlock()
		out := getBuf()
		out.b = wire.AppendError(out.b, f.CallID, CodeServerError, msg, nil)
		putBuf(in)
		c.send(out)
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
	t := taskPool.Get().(*task)
	t.c, t.ctx, t.cc, t.m, t.f, t.in = c, ctx, cc, m, *f, in
	c.cfg.workers.run(t)
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
// over the extension, or nil.
func (c *Conn) runHandler(ctx context.Context, cc *callCtx, m *method, f *wire.Frame, in *buffer) {
	defer c.wg.Done()
	out := getBuf()
	out.b = wire.AppendResponseStart(out.b)
	h := bind.Hint{UTF8: in.utf8, Str: f.Str, StrEnd: f.StrEnd, StrEsc: f.StrEsc}
	typ, err := c.invoke(ctx, m, f, h, out)
	if err == nil {
		out.b = wire.AppendResponseEnd(out.b, typ, f.CallID)
	} else {
		we := toWireError(err)
		if !isWireError(err) {
			c.report(fmt.Errorf("wsrpc: method %q: %w", f.Method, err))
			if !c.cfg.errorDetails {
				we = &Error{Code: CodeInternalError, Message: "internal error"}
			}
		}
		out.b = wire.AppendError(out.b[:0], f.CallID, we.Code, we.Message, we.Data)
	}
	// The caller gave up: it canceled, or the deadline it sent passed and
	// the handler failed for it. It waits for no answer.
	peerGaveUp := cc != nil && (cc.endedBy(errCanceledByPeer) ||
		err != nil && errors.Is(cc.Err(), context.DeadlineExceeded))
	if peerGaveUp {
		putBuf(out)
		out = nil
	} else if queued, ended := c.tryEnqueue(out); queued || ended {
		out = nil
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

func isWireError(err error) bool {
	_, ok := errors.AsType[*Error](err)
	return ok
}

func (c *Conn) sendResult(callID []byte, result, typ string) {
	out := getBuf()
	out.b = wire.AppendResponseStart(out.b)
	out.b = append(out.b, result...)
	out.b = wire.AppendResponseEnd(out.b, typ, callID)
	c.send(out)
}

func (c *Conn) handleResponse(f *wire.Frame, buf *buffer) {
	ch := c.takePending(f.CallID)
	if ch == nil {
		c.logger().Debug("response to no pending call", "call_id", f.ID())
		putBuf(buf)
		return
	}
	ch <- reply{result: f.Result, typ: f.ResultType, errObj: f.Error, buf: buf}
}

// takePending removes and returns the waiting call for a raw call id token.
func (c *Conn) takePending(tok []byte) chan reply {
	if len(tok) < 2 || tok[0] != '"' {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	key := tok[1 : len(tok)-1]
	ch, ok := c.pending[string(key)]
	if !ok {
		s := wire.TokenString(tok) // escaped form of an id
		if ch, ok = c.pending[s]; !ok {
			return nil
		}
		delete(c.pending, s)
		return ch
	}
	delete(c.pending, string(key))
	return ch
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
// caller must release with putBuf.
func (c *Conn) roundTrip(ctx context.Context, method string, args []byte, id string) (reply, error) {
	if method == "" {
		return reply{}, &callError{method, errors.New("empty method name")}
	}
	if _, ok := ctx.Deadline(); !ok && c.cfg.callTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.callTimeout)
		defer cancel()
	}
	if err := ctx.Err(); err != nil {
		return reply{}, &callError{method, err}
	}
	var timeoutMS int64
	if c.ext {
		if dl, ok := ctx.Deadline(); ok {
			timeoutMS = max(1, int64((time.Until(dl)+time.Millisecond-1)/time.Millisecond))
		}
	}
	if id == "" {
		id = wire.NewCallID()
	}
	ch := replyPool.Get().(chan reply)
	c.mu.Lock()
	if c.closing {
		err := c.endErr()
		c.mu.Unlock()
		replyPool.Put(ch)
		return reply{}, &callError{method, &notSentError{err}}
	}
	if c.pending == nil {
		c.pending = make(map[string]chan reply)
	}
	c.pending[id] = ch
	c.mu.Unlock()

	out := getBuf()
	out.b = wire.AppendRequest(out.b, method, args, id, timeoutMS)
	if err := c.enqueue(ctx, out); err != nil {
		if !c.forget(id) {
			putBuf((<-ch).buf) // the connection ended meanwhile and failed the call
		}
		replyPool.Put(ch)
		return reply{}, &callError{method, err}
	}
	select {
	case r := <-ch:
		replyPool.Put(ch)
		if r.err != nil {
			return reply{}, &callError{method, r.err}
		}
		return r, nil
	case <-ctx.Done():
		if c.forget(id) {
			if c.ext {
				cf := getBuf()
				cf.b = wire.AppendCancel(cf.b, id)
				c.trySend(cf)
			}
		} else {
			putBuf((<-ch).buf) // the answer raced the deadline; the deadline wins
		}
		replyPool.Put(ch) // empty: nobody else holds it now
		return reply{}, &callError{method, ctx.Err()}
	}
}

// replyPool recycles the one-slot channels that carry a call's reply. A
// channel goes back only when it is empty and no longer in the pending map.
var replyPool = sync.Pool{New: func() any { return make(chan reply, 1) }}

// notSentError marks a call that failed before its request was queued,
// because the connection had already ended: a Client may try it on the next
// connection.
type notSentError struct{ err error }

func (e *notSentError) Error() string { return e.err.Error() }
func (e *notSentError) Unwrap() error { return e.err }

// forget removes a pending call; it reports whether the call was still
// pending (no answer or failure was delivered to it).
func (c *Conn) forget(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.pending[id]; ok {
		delete(c.pending, id)
		return true
	}
	return false
}

func (c *Conn) finish(method string, r reply, result any) error {
	defer putBuf(r.buf)
	if e := r.remoteError(); e != nil {
		return &callError{method, e}
	}
	if result == nil {
		return nil
	}
	raw := r.result
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

// endErr returns the error for calls on an ended connection; c.mu held.
func (c *Conn) endErr() error {
	if c.cause == nil || errors.Is(c.cause, ErrClosed) {
		return ErrClosed
	}
	return fmt.Errorf("%w: %w", ErrConnectionLost, c.cause)
}

// send queues a frame without a caller's context (answers and errors).
func (c *Conn) send(out *buffer) {
	if err := c.enqueue(c.ctx, out); err != nil {
		c.logger().Debug("frame dropped", "err", err)
	}
}

// trySend queues a frame only if there is room now.
func (c *Conn) trySend(out *buffer) {
	if queued, ended := c.tryEnqueue(out); !queued && !ended {
		putBuf(out)
	}
}

// fitsLocked reports whether the send queue has room for a data frame of
// size bytes: fewer than maxQueue frames, and maxQueueSize bytes at most
// with it, unless the queue is empty (a frame always fits alone). c.wmu
// held.
func (c *Conn) fitsLocked(size int64) bool {
	if c.qframes == 0 {
		return true
	}
	return c.qframes < c.cfg.maxQueue && (c.cfg.maxQueueSize <= 0 || c.qbytes+size <= c.cfg.maxQueueSize)
}

// tryEnqueue queues out if the send queue has room now, taking ownership
// of it. Otherwise it returns false and out stays the caller's, unless the
// connection has ended: then it reports that, having released out.
func (c *Conn) tryEnqueue(out *buffer) (queued bool, ended bool) {
	size := max(int64(cap(out.b)), 1)
	c.wmu.Lock()
	if c.wclosed {
		c.wmu.Unlock()
		putBuf(out)
		return false, true
	}
	if !c.fitsLocked(size) {
		c.wmu.Unlock()
		return false, false
	}
	c.qframes++
	c.qbytes += size
	out.qsize = size
	c.pushLocked(out)
	return true, false
}

// enqueue waits for room in the send queue, then queues out. It takes
// ownership of out.
func (c *Conn) enqueue(ctx context.Context, out *buffer) error {
	for {
		queued, ended := c.tryEnqueue(out)
		if queued {
			return nil
		}
		if ended {
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.endErr()
		}
		c.wmu.Lock()
		if c.room == nil {
			c.room = make(chan struct{})
		}
		room := c.room
		c.wmu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			putBuf(out)
			return ctx.Err()
		case <-c.ctx.Done():
			putBuf(out)
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.endErr()
		}
	}
}

// push queues a control frame, which takes no room in the send queue.
func (c *Conn) push(out *buffer) bool {
	c.wmu.Lock()
	if c.wclosed {
		c.wmu.Unlock()
		putBuf(out)
		return false
	}
	c.pushLocked(out)
	return true
}

// pushLocked appends out to the queue, unlocks c.wmu and starts the writer
// if it is idle.
func (c *Conn) pushLocked(out *buffer) {
	c.wq = append(c.wq, out)
	start := !c.wrunning
	if start {
		c.wrunning = true
		c.wg.Add(1)
	}
	c.wmu.Unlock()
	if start {
		t := taskPool.Get().(*task)
		t.c, t.write = c, true
		c.cfg.workers.run(t)
	}
}

// release frees the buffers of frames taken off the queue, and their room.
func (c *Conn) release(q []*buffer) {
	var frames int
	var size int64
	for i, out := range q {
		if out.qsize > 0 {
			frames++
			size += out.qsize
		}
		putBuf(out)
		q[i] = nil
	}
	if frames == 0 {
		return
	}
	c.wmu.Lock()
	c.qframes -= frames
	c.qbytes -= size
	room := c.room
	c.room = nil
	c.wmu.Unlock()
	if room != nil {
		close(room)
	}
}

// writeLoop writes queued frames until the queue is empty, then exits; the
// next push starts it again. At most one runs at a time.
func (c *Conn) writeLoop() {
	defer c.wg.Done()
	for {
		// Let the goroutines that are ready to queue frames (handlers
		// finishing, callers) do so first, so that one write carries many.
		runtime.Gosched()
		c.wmu.Lock()
		q := c.wq
		if len(q) == 0 {
			c.wrunning = false
			c.wmu.Unlock()
			return
		}
		c.wq = c.wspare
		c.wspare = nil
		c.wmu.Unlock()

		if c.bc == nil && c.werr == nil && c.cfg.writeTimeout > 0 {
			// No batchConn to own the deadline (a socket that is not
			// ours): gorilla sets this one on each of its writes.
			c.werr = c.ws.SetWriteDeadline(time.Now().Add(c.cfg.writeTimeout))
		}
		// The frames go to the socket together, in one write where they fit.
		if c.bc != nil {
			c.bc.hold()
		}
		// A payload may be written by reference (batchConn.keep): the
		// buffers are released once the batch is out.
		for _, out := range q {
			if c.werr == nil && !c.closeSent {
				if c.bc != nil {
					c.bc.keep(out.b)
				}
				c.werr = c.writeFrame(out)
				// Nothing may follow a close frame. gorilla would refuse
				// its own writes (ErrCloseSent) but not the direct ones.
				c.closeSent = out.close
			}
		}
		if c.bc != nil {
			if err := c.bc.release(); c.werr == nil {
				c.werr = err
			}
		}
		c.release(q)
		if c.werr != nil {
			c.fail(fmt.Errorf("write: %w", c.werr))
		} else if c.closeSent && c.cfg.closeTimeout <= 0 {
			c.ws.NetConn().Close() // CloseTimeout < 0: the close frame is out, don't wait for the peer's
		}
		c.wmu.Lock()
		c.wspare = q[:0]
		c.wmu.Unlock()
	}
}

func (c *Conn) writeFrame(out *buffer) error {
	if out.close {
		return c.ws.WriteMessage(websocket.CloseMessage, out.b)
	}
	if out.ping {
		return c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.cfg.keepAlive.Timeout))
	}
	mt := websocket.TextMessage
	if c.cfg.binary {
		mt = websocket.BinaryMessage
	}
	if c.direct {
		return c.bc.writeMasked(mt, out.b)
	}
	return c.ws.WriteMessage(mt, out.b)
}

// fail ends a connection whose link is broken.
func (c *Conn) fail(err error) {
	c.mu.Lock()
	if c.cause == nil {
		c.cause = err
	}
	c.mu.Unlock()
	c.ws.NetConn().Close() // the reader wakes up and cleans up
}

// Close closes the connection: it sends a close frame (status 1000) after
// the frames already queued, waits briefly for the peer's close frame, and
// closes the socket. Calls still waiting fail with [ErrClosed]; handlers'
// contexts are canceled. Close is idempotent and safe to call from handlers
// and hooks. It returns when the read loop has stopped; [Conn.Done] tells
// when every handler has returned too.
func (c *Conn) Close() error {
	c.close(websocket.CloseNormalClosure, "", ErrClosed)
	return nil
}

func (c *Conn) close(code int, reason string, cause error) {
	c.mu.Lock()
	if c.cause == nil {
		c.cause = cause
	}
	first := !c.closeStarted
	c.closeStarted = true
	c.mu.Unlock()
	if first {
		out := getBuf()
		out.b = append(out.b, websocket.FormatCloseMessage(code, reason)...)
		out.close = true
		c.push(out)
		// The socket closes once the peer's close frame came, or after
		// CloseTimeout. Without one, the writer closes it as soon as the
		// close frame is out, and at the latest after WriteTimeout.
		wait := c.cfg.closeTimeout
		if wait <= 0 {
			wait = c.cfg.writeTimeout
		}
		if wait > 0 {
			t := time.AfterFunc(wait, func() { c.ws.NetConn().Close() })
			defer t.Stop()
		}
	}
	if c.inHook.Load() > 0 {
		return // called from a hook on the reader: it will see the close
	}
	<-c.readerDone.wait(&c.mu)
}

// cleanup runs when the read loop has ended, in its goroutine.
func (c *Conn) cleanup(readErr error) {
	c.mu.Lock()
	c.closing = true
	if c.cause == nil {
		c.cause = readErr
	}
	pending := c.pending
	c.pending = nil
	if c.ka != nil {
		c.ka.Stop()
	}
	if c.drained != nil {
		close(c.drained)
		c.drained = nil
	}
	cause := c.cause
	lost := c.endErr()
	c.mu.Unlock()

	c.cancel(cause)
	for _, ch := range pending {
		ch <- reply{err: lost}
	}
	c.wmu.Lock()
	c.wclosed = true
	queued := c.wq
	c.wq = nil
	c.wmu.Unlock()
	c.release(queued)
	c.ws.Close()
	c.readerDone.close(&c.mu)
	c.wg.Wait()

	c.logger().Debug("disconnected", "err", cause) // OnDisconnect gets the cause
	if c.cfg.onDisconnect != nil {
		c.cfg.onDisconnect(c, cause)
	}
	c.done.close(&c.mu)
}

func isNormalClose(err error) bool {
	return websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway)
}

// drain stops new inbound calls and waits until the running ones finished,
// or ctx ends.
func (c *Conn) drain(ctx context.Context) error {
	c.mu.Lock()
	c.draining = true
	if c.calls == 0 || c.closing {
		c.mu.Unlock()
		return nil
	}
	if c.drained == nil {
		c.drained = make(chan struct{})
	}
	ch := c.drained
	c.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// report passes an error no caller waits for to the OnError hook.
func (c *Conn) report(err error) {
	if c.cfg.onError != nil {
		c.cfg.onError(c, err)
	}
}

// reportFromReader is report for errors found by the read loop.
func (c *Conn) reportFromReader(err error) {
	c.logger().Debug("bad frame", "err", err) // the peer's doing, and OnError gets it
	c.inHook.Add(1)
	defer c.inHook.Add(-1)
	c.report(err)
}

func (c *Conn) keepAliveTick() {
	ka := c.cfg.keepAlive
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.wg.Add(1)
	c.ka.Reset(ka.Interval)
	c.mu.Unlock()
	defer c.wg.Done()

	if !c.keepAliveCheck() {
		return
	}
	if c.cfg.pingRPC {
		ctx, cancel := context.WithTimeout(c.ctx, ka.Timeout)
		defer cancel()
		if err := c.call(ctx, "_ping_", nil, nil, ""); err != nil {
			c.logger().Debug("keep-alive _ping_", "err", err)
		}
	}
}

// keepAliveCheck closes the connection if the peer has been silent for
// longer than the keep-alive interval and timeout, and otherwise queues a
// WebSocket ping. It never blocks. It reports whether the connection lives.
func (c *Conn) keepAliveCheck() bool {
	ka := c.cfg.keepAlive
	idle := time.Since(c.start) - time.Duration(c.lastRead.Load())
	if idle > ka.Interval+ka.Timeout {
		c.logger().Debug("keep-alive: peer silent", "idle", idle)
		c.fail(ErrKeepAliveTimeout)
		return false
	}
	ping := getBuf()
	ping.ping = true
	c.trySend(ping)
	return true
}

// buffer is a pooled frame buffer.
type buffer struct {
	b     []byte
	close bool  // a close frame
	ping  bool  // a ping control frame
	qsize int64 // the room it takes in the send queue (data frames)
	utf8  bool  // a frame read, checked to be valid UTF-8
}

var bufPool = sync.Pool{New: func() any { return &buffer{b: make([]byte, 0, 1024)} }}

const maxPooledBuffer = 64 << 10

func getBuf() *buffer { return bufPool.Get().(*buffer) }

func putBuf(b *buffer) {
	if b == nil || cap(b.b) > maxPooledBuffer {
		return
	}
	b.b = b.b[:0]
	b.close, b.ping, b.utf8, b.qsize = false, false, false, 0
	bufPool.Put(b)
}

func (b *buffer) readFrom(r io.Reader) error {
	for {
		if len(b.b) == cap(b.b) {
			b.b = append(b.b, 0)[:len(b.b)]
		}
		n, err := r.Read(b.b[len(b.b):cap(b.b)])
		b.b = b.b[:len(b.b)+n]
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
