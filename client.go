package wsrpc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cenkalti/backoff/v5"
	"github.com/gorilla/websocket"

	"github.com/wsrpc/wsrpc/internal/wsconn"
)

// Client is a connection to a wsrpc (or fastapi_websocket_rpc) server that
// outlives its links: when the link drops it reconnects with backoff and
// runs OnConnect again. It exposes [DialOptions].Methods to the server.
// A Client is safe for concurrent use.
type Client struct {
	url    string
	logURL string      // url without its query, for logs and errors
	opts   DialOptions // defaulted: read the client's own fields here
	cfg    *config     // the connections' options, defaulted
	dialer *websocket.Dialer

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc

	mu     sync.Mutex
	conn   *Conn
	ready  chan struct{} // closed while conn != nil
	closed bool
	err    error         // why the client ended, once it has
	ended  chan struct{} // closed when the client ended for good
	// serving counts the connections whose goroutines (reader, writer,
	// handlers, hooks, OnDisconnect) have not all returned yet; idle is
	// closed when it drops to 0 while Close waits.
	serving int
	idle    chan struct{}
}

// clientWriteBuffer is the size of the write buffers clients take from
// clientWritePool while they write a message.
const clientWriteBuffer = 64 << 10

var clientWritePool sync.Pool

// Dial connects to the server at rawURL (ws://, wss://, http:// or
// https://), retrying with backoff per opts.Retry until ctx ends. It
// returns once the connection is up and OnConnect, if any, returned. ctx
// bounds only this first connect.
//
// An answer that would be the same on every try is final: Dial returns it
// at once, after one try. Final are:
//   - a refusal: 401 Unauthorized or 403 Forbidden;
//   - a TLS certificate failure on either side;
//   - a URL that names no WebSocket endpoint: 400 Bad Request, 404 Not
//     Found, 405 Method Not Allowed, 410 Gone, 426 Upgrade Required, 501
//     Not Implemented, and any 2xx or 3xx answer (a web page, a redirect:
//     "not a WebSocket endpoint").
//
// Everything else is retried: network errors, timeouts, 408 Request
// Timeout, 429 Too Many Requests, 5xx other than 501, and other statuses.
// Once the client has connected, its reconnects treat only refusals and
// certificate failures as final: a wrong-URL answer then may come from a
// server being deployed, so it is retried with backoff like the rest.
//
// An HTTP answer returns an error wrapping *[HTTPError] with its status; a
// try that outlasts HandshakeTimeout fails with [ErrHandshakeTimeout]. When
// ctx ends first, the error wraps both ctx's error and the last try's.
//
// If opts are invalid, Dial returns an error that names every invalid
// field before it tries to connect. [NewServer] checks the [ConnOptions]
// both take the same way and returns the same error, rather than
// panicking: a configuration error is a value that a caller, such as a
// program reading its flags, can report.
func Dial(ctx context.Context, rawURL string, opts *DialOptions) (*Client, error) {
	var o DialOptions
	if opts != nil {
		o = *opts
	}
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, errorf("dial: %w", err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return nil, errorf("dial: unsupported URL scheme %q", u.Scheme)
	}
	if u.User != nil {
		return nil, errorf("dial: credentials in the URL are not supported: send them in DialOptions.Header")
	}
	// Logs and errors name the server without the query, which may hold a
	// token.
	logURL := *u
	logURL.RawQuery, logURL.ForceQuery = "", false
	cfg := &config{ConnOptions: o.ConnOptions, mux: o.Methods, pingRPC: true, workers: newWorkers(), hooks: new(hooks)}
	cl := &Client{
		url:    u.String(),
		logURL: logURL.String(),
		opts:   o,
		cfg:    cfg,
		ready:  make(chan struct{}),
		ended:  make(chan struct{}),
		dialer: &websocket.Dialer{
			Proxy:            o.Proxy,
			TLSClientConfig:  o.TLSConfig,
			HandshakeTimeout: max(o.HandshakeTimeout, 0),
			Subprotocols:     []string{extProtocol},
			// Over TLS, gorilla writes the data frames (elsewhere the Conn
			// writes them itself: Conn.direct): it masks them through its
			// write buffer, and a message larger than the buffer goes out
			// in several frames. A large buffer, taken from a pool only
			// while a message is written, sends most as one frame.
			WriteBufferSize: clientWriteBuffer,
			WriteBufferPool: &clientWritePool,
		},
	}
	cl.ctx, cl.cancel = context.WithCancel(context.Background())

	ws, err := cl.connect(ctx, true)
	if err != nil {
		cl.cancel()
		return nil, err
	}
	started := make(chan error, 1)
	go cl.run(ws, started)
	select {
	case err = <-started:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		cl.Close()
		return nil, errorf("dial: %w", err)
	}
	return cl, nil
}

// connect dials with retries until it succeeds, the retry limits are hit,
// a try fails for good (isFinal), or ctx (or the client) ends. first is
// Dial's connect, before the client ever connected.
func (cl *Client) connect(ctx context.Context, first bool) (*websocket.Conn, error) {
	r := cl.opts.Retry
	b := &backoff.ExponentialBackOff{
		InitialInterval:     r.InitialInterval,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         r.MaxInterval,
	}
	b.Reset()
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	defer context.AfterFunc(cl.ctx, stop)() // Close also stops a connect in progress
	try := 0
	var last error // the last try's error
	op := func() (*websocket.Conn, error) {
		try++
		ws, err := cl.dialOnce(ctx)
		if obs := cl.cfg.Observer; obs != nil {
			obs.ConnectTry(cl.logURL, try, err)
		}
		if err != nil {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				last = err // a try's own failure, not ctx cutting it short
			}
			if isFinal(err, first) || ctx.Err() != nil {
				return nil, backoff.Permanent(err)
			}
			// Routine: Dial returns the error if the tries run out, and a
			// reconnect that gives up for good is logged by run.
			cl.cfg.Logger.Debug("connect try failed", "url", cl.logURL, "try", try, "err", err)
		}
		return ws, err
	}
	opts := []backoff.RetryOption{backoff.WithBackOff(b), backoff.WithMaxElapsedTime(r.MaxElapsedTime)}
	if r.MaxTries > 0 {
		opts = append(opts, backoff.WithMaxTries(uint(r.MaxTries)))
	}
	ws, err := backoff.Retry(ctx, op, opts...)
	if err != nil {
		if cl.ctx.Err() != nil {
			return nil, ErrClosed
		}
		if cerr := ctx.Err(); cerr != nil {
			// Keep the reason the tries failed: the last one's error
			// (backoff returns the bare ctx error when ctx ends between
			// tries), unless it is ctx's own.
			if last != nil {
				err = errorf("%w (last try: %w)", cerr, last)
			} else if !errors.Is(err, cerr) {
				err = errorf("%w (%w)", cerr, err)
			}
		}
		return nil, errorf("connect %s: %w", cl.logURL, err)
	}
	return ws, nil
}

// dialOnce makes one connect attempt.
func (cl *Client) dialOnce(ctx context.Context) (*websocket.Conn, error) {
	// gorilla bounds the handshake by ctx's deadline but does not watch for
	// its cancellation: unblock the socket when ctx ends.
	var stop func() bool
	d := *cl.dialer
	dial := cl.opts.NetDialContext
	d.NetDialContext = func(dctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(dctx, network, addr)
		if err != nil {
			return nil, err
		}
		stop = context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
		return wsconn.New(c), nil
	}
	ws, resp, err := d.DialContext(ctx, cl.url, cl.opts.Header)
	if stop != nil {
		stop()
	}
	if err == nil && ctx.Err() != nil {
		ws.Close()
		return nil, ctx.Err()
	}
	if err != nil {
		cerr := ctx.Err()
		if dl, ok := ctx.Deadline(); cerr == nil && ok && !time.Now().Before(dl) {
			cerr = context.DeadlineExceeded // ctx's deadline cut the try; its timer may not have fired yet
		}
		if cerr != nil {
			if errors.Is(err, cerr) {
				return nil, err
			}
			return nil, errorf("%w (%w)", cerr, err)
		}
		if isDeadline(err) {
			// The try's own bound, not ctx: say so rather than let it
			// pass for ctx's deadline.
			return nil, errorf("%w after %v (%v)", ErrHandshakeTimeout, cl.dialer.HandshakeTimeout, err)
		}
		if resp != nil && errors.Is(err, websocket.ErrBadHandshake) {
			return nil, answerError(resp)
		}
		return nil, err
	}
	if cl.cfg.MaxMessageSize > 0 {
		ws.SetReadLimit(cl.cfg.MaxMessageSize)
	}
	return ws, nil
}

// answerError is the error for an answer to the upgrade other than a valid
// 101: an *HTTPError, said in one line, without the body unless that is a
// short line of plain text.
func answerError(resp *http.Response) error {
	msg := bodyMessage(resp)
	he := &HTTPError{StatusCode: resp.StatusCode}
	switch {
	case resp.StatusCode == http.StatusSwitchingProtocols:
		return &handshakeError{he, "bad WebSocket handshake: HTTP 101 Switching Protocols without a valid Upgrade, Connection or Sec-WebSocket-Accept header"}
	case resp.StatusCode < 400:
		// A page, a redirect: an HTTP server, but no WebSocket here.
		return &handshakeError{he, "not a WebSocket endpoint: " + statusLine(resp.StatusCode) + ", expected 101 Switching Protocols"}
	}
	he.Message = msg
	return he
}

// handshakeError is an *HTTPError whose status is no error status, with a
// text that says what went wrong instead.
type handshakeError struct {
	he  *HTTPError
	msg string
}

func (e *handshakeError) Error() string { return errPrefix + e.msg }
func (e *handshakeError) text() string  { return e.msg }
func (e *handshakeError) Unwrap() error { return e.he }

// maxBodyMessage bounds the body an HTTPError keeps as its Message.
const maxBodyMessage = 200

// bodyMessage returns an answer's body if it is a short line of printable
// plain text (as http.Error writes), and "" otherwise: an HTML page, a long
// or multi-line body, or control characters have no place in an error's
// one line, nor in logs.
func bodyMessage(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024)) // gorilla keeps at most 1 KiB
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "text/plain" {
			return ""
		}
	}
	s := strings.TrimSpace(string(b)) // http.Error ends the text with "\n"
	if len(s) > maxBodyMessage || !utf8.ValidString(s) || strings.HasPrefix(s, "<") {
		return ""
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return ""
		}
	}
	return s
}

// isFinal reports whether a connect error would recur on every try, so
// that it is not retried (see Dial for the rule): the server refused (401,
// 403), a certificate failed verification on either side, or, on the
// first connect, the URL names no WebSocket endpoint (wrongURL).
func isFinal(err error, first bool) bool {
	if he, ok := errors.AsType[*HTTPError](err); ok {
		switch he.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return true
		}
		return first && wrongURL(he.StatusCode)
	}
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
	)
	if errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) {
		return true
	}
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return true
	}
	// The server's alert about our certificate (Go does not export the
	// alert type over TCP): "remote error: tls: certificate required",
	// "bad certificate", "unknown certificate authority", ...
	if oe, ok := errors.AsType[*net.OpError](err); ok && oe.Op == "remote error" && oe.Err != nil {
		return strings.Contains(oe.Err.Error(), "certificate")
	}
	return false
}

// wrongURL reports whether an answer to the upgrade says that the URL names
// no WebSocket endpoint: the answer of a web server, a redirect, or a
// status that says the path or the method is wrong. 408, 429 and 5xx other
// than 501 are passing conditions, and 101 (a handshake gorilla rejected)
// may be a proxy's glitch: those are retried.
func wrongURL(status int) bool {
	switch status {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusMethodNotAllowed,
		http.StatusGone, http.StatusUpgradeRequired, http.StatusNotImplemented:
		return true
	}
	return status >= 200 && status < 400
}

// isDeadline reports whether err is a deadline passing (the handshake's).
func isDeadline(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}

// run serves each connection and reconnects when it drops, until the
// client is closed or a reconnect fails for good.
func (cl *Client) run(ws *websocket.Conn, started chan<- error) {
	for {
		c := newConn(ws, cl.cfg, nil)
		c.logger().Debug("connected", "url", cl.logURL, "extensions", c.ext)
		cl.mu.Lock()
		if cl.closed {
			cl.mu.Unlock()
			ws.Close()
			cl.end(ErrClosed)
			return
		}
		cl.serving++
		if started != nil {
			// Dial's connection: Dial returns once the hooks returned,
			// and until then nobody but the hooks has the client.
			cl.publishLocked(c)
			cl.mu.Unlock()
			cl.startServing(c, started)
			started = nil
		} else {
			cl.mu.Unlock()
			cl.serveReconnected(c)
		}
		<-c.readerDone.wait(&c.mu)

		cl.mu.Lock()
		cl.conn = nil
		cl.ready = make(chan struct{})
		closed := cl.closed
		cl.mu.Unlock()
		if closed {
			cl.end(ErrClosed)
			return
		}
		if cl.opts.DisableReconnect {
			cl.cfg.Logger.Debug("client ended: the connection ended and DisableReconnect is set", "url", cl.logURL, "cause", c.Err())
			cl.end(c.Err())
			return
		}
		c.logger().Debug("reconnecting", "url", cl.logURL, "cause", c.Err())
		var err error
		if ws, err = cl.connect(cl.ctx, false); err != nil {
			if !errors.Is(err, ErrClosed) {
				// Only Done and Err tell of it, and no caller waits on
				// them as it happens: an operator must see it.
				cl.cfg.Logger.Error("client gave up reconnecting", "url", cl.logURL, "err", err)
			}
			cl.end(err)
			return
		}
	}
}

// publishLocked makes c the client's connection, for Conn and Call, and
// wakes the calls waiting for one; cl.mu held.
func (cl *Client) publishLocked(c *Conn) {
	cl.conn = c
	close(cl.ready)
}

// serveReconnected serves a reconnect's connection c, which becomes the
// client's (Conn, Call, the calls waiting for it) only once its OnConnect
// hooks returned without error, as Dial's first connection does: a layer
// that restores its state in a hook (pubsub re-subscribes) has done so
// before the application's calls go out on c. It returns once c is the
// client's or has ended.
func (cl *Client) serveReconnected(c *Conn) {
	hooked := make(chan error, 1)
	cl.startServing(c, hooked)
	var err error
	select {
	case err = <-hooked:
	case <-c.readerDone.wait(&c.mu):
		return
	case <-cl.ctx.Done(): // Close, maybe from a hook: it has not seen c
		err = ErrClosed
	}
	cl.mu.Lock()
	if err == nil && !cl.closed {
		cl.publishLocked(c)
		cl.mu.Unlock()
		return
	}
	closed := cl.closed
	cl.mu.Unlock()
	if closed {
		c.Close()
	} // else the failed hook closes c
}

// startServing serves c on a goroutine of its own, which cl.serving
// counts (the caller counted it), until every goroutine of c returned.
func (cl *Client) startServing(c *Conn, onConnect chan<- error) {
	go func() {
		c.serve(onConnect)
		cl.served()
	}()
}

// end records why the client ended for good.
func (cl *Client) end(err error) {
	cl.mu.Lock()
	if cl.err == nil {
		cl.err = err
	}
	cl.mu.Unlock()
	cl.cfg.workers.stop()
	close(cl.ended)
}

// Conn returns the current connection, or nil while the client is
// (re)connecting or after it ended.
func (cl *Client) Conn() *Conn {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.conn
}

// Call calls method on the server over the current connection; see
// [Conn.Call]. While the client is reconnecting, Call fails at once with
// [ErrNotConnected], or waits for the connection if WaitForReady is set.
// Calls in flight when the link drops fail with [ErrConnectionLost]; they
// are not retried, since the server may have run them. [Client.CallWith]
// makes calls that are.
func (cl *Client) Call(ctx context.Context, method string, args, result any) error {
	return cl.CallWith(ctx, method, args, result, CallOptions{})
}

// CallOptions are the options of one call made with [Client.CallWith]. The
// zero value makes the call [Client.Call] makes. A [Conn] takes none: it
// never reconnects, so it has no call to retry.
type CallOptions struct {
	// Idempotent says that the call is safe to run more than once, as a
	// read or an absolute write is. When the link drops before its answer
	// arrives, the client sends it again on the next connection; while the
	// client is reconnecting the call waits for it (as with WaitForReady);
	// ctx bounds it all. Other calls are never retried: the server may
	// have run them.
	Idempotent bool
}

// CallWith is [Client.Call] with the options opts:
//
//	err := cl.CallWith(ctx, "get", args, &v, wsrpc.CallOptions{Idempotent: true})
//
// The options are an argument, not a value carried by ctx, so that they
// show at the call site and reach no other call made with a context
// derived from ctx. They are a value, not a pointer: they cost no
// allocation.
func (cl *Client) CallWith(ctx context.Context, method string, args, result any, opts CallOptions) error {
	raw, err := encodeArgs(args)
	if err != nil {
		return &callError{method, err}
	}
	if _, ok := ctx.Deadline(); !ok && cl.cfg.CallTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cl.cfg.CallTimeout)
		defer cancel()
	}
	wait := cl.opts.WaitForReady || opts.Idempotent
	for {
		cl.mu.Lock()
		c, ready, closed := cl.conn, cl.ready, cl.closed
		cl.mu.Unlock()
		if closed {
			return &callError{method, ErrClosed}
		}
		if c != nil {
			err := c.call(ctx, method, raw, result, "")
			_, notSent := errors.AsType[*notSentError](err)
			retry := notSent || opts.Idempotent && errors.Is(err, ErrConnectionLost)
			if !retry || cl.isClosed() {
				return err
			}
			// The connection ended before the request went out, or, for
			// an idempotent call, before its answer came.
			if !wait {
				return &callError{method, ErrNotConnected}
			}
			select {
			case <-c.readerDone.wait(&c.mu):
			case <-ctx.Done():
				return err
			}
			continue
		}
		if !wait {
			return &callError{method, ErrNotConnected}
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return &callError{method, errorf("%w: %w", ErrNotConnected, ctx.Err())}
		case <-cl.ended:
			return &callError{method, cl.Err()}
		}
	}
}

// Go calls method on the server over the current connection without
// waiting for the answer; see [Conn.Go], for what it returns and when done
// runs too. Go never waits for a connection: while the client is
// reconnecting it fails at once with [ErrNotConnected], whatever
// WaitForReady says. Nor is a call retried: those in flight when the link
// drops complete with [ErrConnectionLost]. The calls one goroutine makes
// with Go reach the server in the order it made them as long as they go
// over one connection.
func (cl *Client) Go(ctx context.Context, method string, args any, done func(*Reply)) error {
	raw, err := encodeArgs(args)
	if err != nil {
		return &callError{method, err}
	}
	cl.mu.Lock()
	c, closed := cl.conn, cl.closed
	cl.mu.Unlock()
	switch {
	case closed:
		return &callError{method, ErrClosed}
	case c == nil:
		return &callError{method, ErrNotConnected}
	}
	err = c.goCall(ctx, method, raw, done)
	if _, notSent := errors.AsType[*notSentError](err); notSent && !cl.isClosed() {
		return &callError{method, ErrNotConnected} // the connection just ended
	}
	return err
}

func (cl *Client) isClosed() bool {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.closed
}

// Done returns a channel closed when the client has ended for good: closed,
// or given up reconnecting ([Client.Err] says why).
func (cl *Client) Done() <-chan struct{} { return cl.ended }

// Err returns why the client ended, or nil while it runs.
func (cl *Client) Err() error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.err
}

// served counts a connection's goroutines as all returned.
func (cl *Client) served() {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.serving--; cl.serving == 0 && cl.idle != nil {
		close(cl.idle)
		cl.idle = nil
	}
}

// Close closes the connection (status 1000) and stops reconnecting. Calls
// in flight fail with [ErrClosed]; handlers' contexts are canceled. It is
// idempotent and safe to call from handlers and hooks.
//
// Close returns once every goroutine the client runs has returned: the
// reconnect loop, each connection's reader and writer, the handlers and
// hooks, OnDisconnect included. It waits for them at most CloseTimeout
// after the socket closed, which is what a handler that ignores its
// context's end, or one that calls Close itself, costs it; then it
// returns and they end on their own. The close handshake takes at most
// CloseTimeout as well. Called on the connection's reader (from OnError,
// or from the done function of a [Client.Go] call), Close returns at once,
// and the client ends once the caller returned.
func (cl *Client) Close() error {
	cl.mu.Lock()
	cl.closed = true
	c := cl.conn
	cl.mu.Unlock()
	cl.cancel()
	if c != nil {
		c.Close()
		if c.inHook.Load() > 0 {
			// Called on c's reader (OnError, or a Go call's done), which
			// must return before the client can end: it ends after.
			return nil
		}
	}
	<-cl.ended
	if cl.waitServed(cl.cfg.CloseTimeout) {
		cl.cfg.workers.stopAndWait()
	}
	return nil
}

// waitServed waits up to d for every connection's goroutines to return,
// and reports whether they did.
func (cl *Client) waitServed(d time.Duration) bool {
	cl.mu.Lock()
	if cl.serving == 0 {
		cl.mu.Unlock()
		return true
	}
	if cl.idle == nil {
		cl.idle = make(chan struct{})
	}
	idle := cl.idle
	cl.mu.Unlock()
	if d <= 0 {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-idle:
		return true
	case <-t.C:
		return false
	}
}
