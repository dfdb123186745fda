package wsrpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsrpc/wsrpc/internal/wire"
	"github.com/wsrpc/wsrpc/internal/wsconn"
)

// extProtocol is the WebSocket subprotocol that two wsrpc peers negotiate to
// enable the extensions (deadline propagation and cancellation). A peer that
// does not offer it, such as a Python one, never sees an extension frame.
const extProtocol = "wsrpc.v1"

// config is what a Conn needs from its Server or Client: the options both
// sides share, defaulted by ConnOptions.withDefaults (a field that a
// negative value disables stays negative: readers test for > 0), and what
// the side adds. It is read-only once made, but for the replies pool.
type config struct {
	ConnOptions
	mux     *Mux
	pingRPC bool // keep-alive also calls _ping_ (clients)
	workers *workers
	hooks   *hooks // registered besides OnConnect and OnDisconnect

	replies replyPool // the reply channels of the calls to the peers
}

// Conn is one WebSocket connection, on either side. Both sides may call
// methods of the other at any time: calls run concurrently both ways, and a
// handler may call the peer back while the peer's call to it is open.
//
// A handler's context carries its Conn ([ConnFromContext]). A [Client]
// hands out its current Conn with [Client.Conn]. All methods are safe for
// concurrent use.
//
// Each Conn has one reader goroutine (serve, readLoop), which never runs a
// handler or waits for the peer; it runs the done functions of Go calls
// with their answers (asyncCall.complete), and with ErrConnectionLost in
// cleanup. Handlers run on the workers of the Server or Client, and so does
// the writer (writeLoop), only while frames are queued. The Conn counts all
// of them, its hooks, and the Go calls' expiries (asyncCall.expire), in wg;
// cleanup waits for them before Done closes.
type Conn struct {
	// Set when the connection is made, read-only after.
	ws *websocket.Conn
	bc *wsconn.Conn // ws's socket, or nil for a socket that is not ours
	// handshake, if not nil, writes the upgrade response that bc holds
	// (a Server's connection, indexed before its client hears it is up):
	// serve calls it first.
	handshake func() error
	direct    bool // data frames are written straight to bc (no TLS between), not through gorilla: a client's masked in place
	id        string
	cfg       *config
	up        *upgrade // server side: the upgrade request
	identity  any      // what the server's Authenticate returned
	ext       bool     // the wsrpc.v1 extensions were negotiated
	start     time.Time
	ctx       context.Context // carries the Conn; canceled, with the cause, when it ends
	cancel    context.CancelCauseFunc

	lastRead atomic.Int64 // time.Since(start) when a frame last arrived
	inHook   atomic.Int32 // the reader is running a hook

	pending pendingCalls // our calls waiting for answers (its own lock)
	q       sendQueue    // frames waiting for the writer (its own lock)

	// Owned by the running writer (at most one runs).
	werr      error // the write that failed; nothing more is written
	closeSent bool  // the close frame is out: no data frame may follow

	// mu guards the fields below, and readerDone and done.
	mu           sync.Mutex
	running      []*callCtx    // extension: the handlers a cancel frame may reach
	closing      bool          // ended or ending: no new calls
	closeStarted bool          // Close began: the close frame is queued
	cause        error         // why the connection ended
	calls        int           // handlers running, or waiting to queue their answers
	callBytes    int64         // the bytes they hold: their requests, then their answers
	draining     bool          // Shutdown: new calls are refused
	drained      chan struct{} // closed when calls drops to 0 while draining
	ka           *time.Timer   // a client's keep-alive timer
	ordered      []*callTask   // calls of ordered methods waiting for their turn, in arrival order
	orderedBusy  bool          // a call of an ordered method runs
	turn         *callTask     // the ordered call whose turn it is; nil once it passed it on (PassTurn)

	wg         sync.WaitGroup // the goroutines working for the Conn: writer, handlers, hooks, Go calls' expiries
	readerDone lazyDone       // closed when the read loop has ended
	done       lazyDone       // closed when everything has ended, after OnDisconnect
}

type connKey struct{}

// ConnFromContext returns the connection whose call a handler is serving,
// or nil if ctx is not a handler's context.
func ConnFromContext(ctx context.Context) *Conn {
	c, _ := ctx.Value(connKey{}).(*Conn)
	return c
}

func newConn(ws *websocket.Conn, cfg *config, up *upgrade) *Conn {
	bc, direct := wsconn.Of(ws)
	c := &Conn{
		ws:    ws,
		bc:    bc,
		id:    wire.NewCallID(),
		cfg:   cfg,
		up:    up,
		ext:   ws.Subprotocol() == extProtocol,
		start: time.Now(),
		q:     sendQueue{maxFrames: cfg.SendQueue, maxBytes: cfg.SendQueueBytes},
	}
	c.direct = direct
	if c.bc != nil {
		// From now on the socket's write deadline is the wsconn.Conn's:
		// each write, data or control, direct or through gorilla, gets
		// WriteTimeout from its start.
		c.bc.Own(cfg.WriteTimeout)
	}
	ctx, cancel := context.WithCancelCause(context.WithValue(context.Background(), connKey{}, c))
	c.ctx, c.cancel = ctx, cancel
	ws.SetPingHandler(func(data string) error {
		c.touch()
		// The deadline bounds only the wait for gorilla's write lock; the
		// socket write is bounded by the wsconn.Conn (WriteTimeout).
		err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(pongWait(cfg.WriteTimeout)))
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
	ws.SetCloseHandler(func(code int, text string) error {
		// The peer's close is the cause, recorded before the echo goes
		// out: once the peer has the echo it may act on the end (stop a
		// server, say), and a close of ours racing with that must not
		// replace the reason the connection really ended.
		c.mu.Lock()
		if c.cause == nil {
			c.cause = &websocket.CloseError{Code: code, Text: text}
		}
		c.mu.Unlock()
		err := ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(pongWait(cfg.WriteTimeout)))
		if err != nil && !errors.Is(err, websocket.ErrCloseSent) {
			c.logger().Debug("close echo not sent", "err", err)
		}
		return nil
	})
	return c
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
	return c.cfg.Logger.With("conn", c.id, "remote", c.ws.RemoteAddr().String())
}

// touch records that a frame arrived, and returns when, as
// time.Since(c.start).
func (c *Conn) touch() time.Duration {
	now := time.Since(c.start)
	c.lastRead.Store(int64(now))
	return now
}

// serve runs the connection until it ends: the read loop runs in the
// calling goroutine. onConnect, if not nil, gets the hook's result.
func (c *Conn) serve(onConnect chan<- error) {
	if c.handshake != nil {
		if err := c.handshake(); err != nil {
			// The client never heard the connection was up: it ends
			// unopened, without the hooks.
			c.cleanup(fmt.Errorf("writing the upgrade response: %w", err), false)
			return
		}
	}
	c.touch()
	if obs := c.cfg.Observer; obs != nil {
		obs.ConnOpened(c)
	}
	if registered := c.cfg.hooks.onConnect(); c.cfg.OnConnect != nil || len(registered) > 0 {
		c.wg.Go(func() {
			var err error
			if c.cfg.OnConnect != nil {
				err = c.cfg.OnConnect(c.ctx, c)
			}
			for _, f := range registered {
				if err != nil {
					break
				}
				err = f(c.ctx, c)
			}
			if onConnect != nil {
				onConnect <- err
			}
			if err != nil {
				err = errorf("on connect: %w", err)
				c.report(err)
				c.close(websocket.CloseInternalServerErr, "on connect failed", err)
			}
		})
	} else if onConnect != nil {
		onConnect <- nil
	}
	if ka := c.cfg.KeepAlive; ka.Interval > 0 && c.cfg.pingRPC {
		// A client's own timer; a server's connections are swept by its
		// keeper (keepAliveCheck).
		c.mu.Lock()
		c.ka = time.AfterFunc(ka.Interval, c.keepAliveTick)
		c.mu.Unlock()
	}
	err := c.readLoop()
	c.cleanup(err, true)
}
