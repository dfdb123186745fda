package wsrpc

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Defaults for the options below.
const (
	DefaultCallTimeout        = 30 * time.Second
	DefaultKeepAliveInterval  = 30 * time.Second
	DefaultMaxMessageSize     = 1 << 20
	DefaultSendQueue          = 256
	DefaultSendQueueBytes     = 4 << 20
	DefaultWriteTimeout       = 10 * time.Second
	DefaultHandshakeTimeout   = 10 * time.Second
	DefaultMaxConcurrentCalls = 1024
	DefaultMaxCallBytes       = 16 << 20
	DefaultCloseTimeout       = 2 * time.Second
)

// KeepAlive configures liveness checks on a connection. Every Interval a
// side sends a WebSocket ping (and a client also calls the peer's _ping_
// method, as the Python client does); a connection from which nothing at
// all has arrived for Interval+Timeout is dead and is closed, and a client
// then reconnects.
type KeepAlive struct {
	// Interval between pings. Zero means DefaultKeepAliveInterval (30 s);
	// negative disables keep-alive.
	Interval time.Duration
	// Timeout is how long past an Interval the peer may stay silent. Zero
	// means the same as Interval.
	Timeout time.Duration
}

// RetryOptions configures how a [Client] retries connecting, on [Dial] and
// on every reconnect: jittered exponential backoff. Some answers are final
// and never retried, whatever the options: 401 and 403, and certificate
// failures, always; on Dial's first connect also the answers that say the
// URL names no WebSocket endpoint (400, 404, 405, 410, 426, 501, and any
// 2xx or 3xx). Reconnects retry those. [Dial] gives the whole rule.
type RetryOptions struct {
	// InitialInterval is the first wait. Zero means 100 ms.
	InitialInterval time.Duration
	// MaxInterval caps the wait between tries. Zero means 120 s.
	MaxInterval time.Duration
	// MaxTries caps the tries of one connect. Zero means no cap (Dial is
	// still bounded by its context).
	MaxTries int
	// MaxElapsedTime caps the time one connect may take with all its
	// tries. Zero means no cap.
	MaxElapsedTime time.Duration
}

// ServerOptions configures a [Server]. A nil *ServerOptions, and every zero
// field, means the documented default.
type ServerOptions struct {
	// Authenticate, if set, sees each upgrade request before the WebSocket
	// is accepted. Returning a nil error accepts it, and the identity it
	// returns (a user id, a claims struct, or nil) goes with the
	// connection: handlers and hooks read it with [Conn.Identity], so
	// that none has to parse the request again. Returning an *[HTTPError]
	// refuses it with that status (use 401 or 403); any other error
	// refuses it with 403. The error's text is not sent to the client
	// unless it is an HTTPError's Message.
	Authenticate func(r *http.Request) (identity any, err error)

	// OriginPatterns lists host patterns (path.Match syntax, such as
	// "*.example.com" or "localhost:8080") that a browser's Origin header
	// may name besides the request's own host. By default only same-host
	// browser connections are accepted; requests without an Origin header
	// (non-browser clients) are always accepted.
	OriginPatterns []string
	// InsecureSkipOriginCheck accepts every Origin. Leave it false unless
	// another layer checks origins.
	InsecureSkipOriginCheck bool

	// OnConnect runs in its own goroutine when a connection opens, while
	// calls already flow; it may call the peer. An error closes the
	// connection (status 1011).
	OnConnect func(ctx context.Context, c *Conn) error
	// OnDisconnect runs once per connection after it ended and its
	// handlers returned, with the cause.
	OnDisconnect func(c *Conn, err error)
	// OnError receives errors no caller waits for: bad frames from the
	// peer, handler panics (*PanicError), handler errors that are not
	// *Error, and results that cannot be encoded. It must not block.
	OnError func(c *Conn, err error)
	// Logger receives the server's logs. Nil means slog.Default(); use
	// slog.New(slog.DiscardHandler) to silence it. Only what needs an
	// operator, and reaches no caller as an error, is logged above Debug:
	//   - Error: a handler panicked (with the stack; OnError gets a
	//     *PanicError too).
	//   - Debug: connections opened and closed, whatever the cause
	//     (OnDisconnect gets it, keep-alive timeouts included); upgrades
	//     refused by Authenticate, the Origin check, MaxConns,
	//     MaxConnsPerAddr or a shutdown (the client gets the status);
	//     bad frames from a peer (OnError gets them, and a peer must not
	//     be able to flood the log); frames dropped because the
	//     connection ended; answers to no pending call.
	//
	// Nothing is logged at Info or Warn.
	Logger *slog.Logger

	// CallTimeout bounds the server's calls to clients whose context has
	// no deadline. Zero means DefaultCallTimeout (30 s); negative: none.
	CallTimeout time.Duration
	// KeepAlive configures pings to clients; see [KeepAlive].
	KeepAlive KeepAlive
	// BinaryFrames sends frames as binary messages holding the same JSON.
	// Both kinds are always accepted.
	BinaryFrames bool
	// MaxMessageSize is the largest frame accepted, in bytes; a larger one
	// closes the connection with status 1009. Zero means
	// DefaultMaxMessageSize (1 MiB); negative: no limit.
	MaxMessageSize int64
	// SendQueue bounds the frames queued for writing per connection;
	// callers and handlers wait (callers bounded by their context) while
	// it is full. Zero means DefaultSendQueue (256).
	SendQueue int
	// SendQueueBytes bounds the bytes of the frames queued for writing per
	// connection, answers included, as SendQueue bounds their number; a
	// frame always fits in an empty queue, so one message of any size
	// goes out. Zero means DefaultSendQueueBytes (4 MiB); negative: no
	// limit.
	SendQueueBytes int64
	// WriteTimeout bounds each write to the socket; a peer that does not
	// read for this long is disconnected. Zero means DefaultWriteTimeout
	// (10 s); negative: none.
	WriteTimeout time.Duration
	// CloseTimeout is how long closing a connection ([Conn.Close],
	// [Server.Close], [Server.Shutdown]) waits for the peer's close frame
	// after sending its own, before it closes the socket. Zero means
	// DefaultCloseTimeout (2 s); negative: don't wait (the socket closes as
	// soon as the close frame is written). Client.Close, Server.Close and
	// Shutdown also wait at most this long for handlers that have not
	// returned once their context was canceled.
	CloseTimeout time.Duration
	// MaxConcurrentCalls bounds the calls from one client that run at
	// once; a call over it is answered at once with a CodeServerError
	// error (ErrTooManyCalls). Zero means DefaultMaxConcurrentCalls (1024).
	MaxConcurrentCalls int
	// MaxCallBytes bounds the memory that one client's running calls
	// hold: a call's request stays in memory until its handler returns,
	// and then its answer until the send queue has room for it. A call
	// that would go over it is answered at once with a CodeServerError
	// error (ErrTooManyCalls); a call arriving while no other call runs is
	// always taken, so one message of MaxMessageSize always fits. With
	// MaxMessageSize and SendQueueBytes it bounds a connection's memory
	// (see docs/security.md). Zero means DefaultMaxCallBytes (16 MiB);
	// negative: no limit.
	MaxCallBytes int64
	// Observer, if set, watches the connections: calls both ways,
	// frames, the send queue, connects and disconnects. See [Observer].
	Observer Observer
	// SendErrorDetails sends the text of handler errors that are not
	// *Error to the peer. By default the peer gets "internal error" and
	// the text goes only to OnError, so that internals (paths, addresses,
	// queries) do not leak.
	SendErrorDetails bool

	// MaxConns caps the connections open at once; more are refused with
	// 503. Zero means no cap.
	MaxConns int
	// MaxConnsPerAddr caps the connections open at once from one remote
	// IP address (as net/http sees it: put the real client address in
	// RemoteAddr behind a proxy); more are refused with 503. Zero means no
	// cap.
	MaxConnsPerAddr int
	// HandshakeTimeout bounds writing the upgrade response, which only
	// blocks for a client that does not read while the socket's buffers
	// are full. Zero means DefaultHandshakeTimeout (10 s). Reading the
	// request is net/http's: set http.Server.ReadHeaderTimeout, which
	// net/http leaves unset.
	HandshakeTimeout time.Duration
}

// DialOptions configures a [Client]. A nil *DialOptions, and every zero
// field, means the documented default.
type DialOptions struct {
	// Methods are the methods the client exposes to the server. Nil
	// exposes only the built-ins.
	Methods *Mux

	// Header is sent with every upgrade request (for example a token).
	Header http.Header
	// TLSConfig is used for wss:// URLs. Nil means the default.
	TLSConfig *tls.Config
	// Proxy chooses an HTTP(S) proxy for each connect. Nil means
	// http.ProxyFromEnvironment: HTTP_PROXY, HTTPS_PROXY and NO_PROXY (read
	// once per process; requests to localhost and loopback addresses never
	// use it). The proxy is asked for a tunnel with HTTP CONNECT.
	Proxy func(*http.Request) (*url.URL, error)
	// NetDialContext, if set, opens the TCP connection to the server (or
	// to the proxy), for example to choose a local address. Nil means a
	// plain net.Dialer.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// HandshakeTimeout bounds each try's TCP, TLS and WebSocket handshake.
	// Zero means DefaultHandshakeTimeout (10 s).
	HandshakeTimeout time.Duration

	// Retry configures connect retries, on Dial and on reconnects.
	Retry RetryOptions
	// DisableReconnect makes the client end, instead of reconnecting,
	// when its connection drops.
	DisableReconnect bool
	// WaitForReady makes calls made while the client is reconnecting wait
	// for the new connection (bounded by their context). By default they
	// fail at once with ErrNotConnected.
	WaitForReady bool

	// OnConnect runs on every new connection, the first and each
	// reconnect, in its own goroutine while calls already flow; Dial
	// returns after it returned. An error fails Dial, or on a reconnect
	// closes that connection (the client then tries again).
	OnConnect func(ctx context.Context, c *Conn) error
	// OnDisconnect runs once per connection after it ended, with the cause.
	OnDisconnect func(c *Conn, err error)
	// OnError receives errors no caller waits for; see ServerOptions.OnError.
	OnError func(c *Conn, err error)
	// Logger receives the client's logs. Nil means slog.Default(); use
	// slog.New(slog.DiscardHandler) to silence it. As on a server (see
	// ServerOptions.Logger), only what reaches no caller as an error is
	// logged above Debug:
	//   - Error: a handler panicked; the client gave up reconnecting for
	//     good (a final answer, or Retry's MaxTries or MaxElapsedTime ran
	//     out; Done and Err tell too).
	//   - Debug: connected, disconnected (OnDisconnect gets the cause),
	//     reconnecting, each connect try that failed (Dial returns the
	//     error of its first connect), the end of a client with
	//     DisableReconnect, and the frame events of ServerOptions.Logger.
	//
	// Nothing is logged at Info or Warn.
	Logger *slog.Logger

	// CallTimeout bounds calls whose context has no deadline, including
	// any wait for a connection. Zero means DefaultCallTimeout (30 s);
	// negative: none.
	CallTimeout time.Duration
	// KeepAlive configures pings to the server; see [KeepAlive].
	KeepAlive KeepAlive
	// BinaryFrames sends frames as binary messages.
	BinaryFrames bool
	// MaxMessageSize: see ServerOptions.MaxMessageSize.
	MaxMessageSize int64
	// SendQueue: see ServerOptions.SendQueue.
	SendQueue int
	// SendQueueBytes: see ServerOptions.SendQueueBytes.
	SendQueueBytes int64
	// WriteTimeout: see ServerOptions.WriteTimeout.
	WriteTimeout time.Duration
	// CloseTimeout is how long [Client.Close] waits for the server's close
	// frame after sending its own; see ServerOptions.CloseTimeout.
	CloseTimeout time.Duration
	// MaxConcurrentCalls: see ServerOptions.MaxConcurrentCalls.
	MaxConcurrentCalls int
	// MaxCallBytes: see ServerOptions.MaxCallBytes.
	MaxCallBytes int64
	// SendErrorDetails: see ServerOptions.SendErrorDetails.
	SendErrorDetails bool
	// Observer: see ServerOptions.Observer; it also sees each connect try.
	Observer Observer
}

// common holds the options Server and Client share, to build a config.
type common struct {
	onConnect    func(context.Context, *Conn) error
	onDisconnect func(*Conn, error)
	onError      func(*Conn, error)
	logger       *slog.Logger
	callTimeout  time.Duration
	keepAlive    KeepAlive
	binary       bool
	maxMessage   int64
	sendQueue    int
	sendBytes    int64
	writeTimeout time.Duration
	maxCalls     int
	maxCallBytes int64
	errorDetails bool
	closeTimeout time.Duration
	observer     Observer
}

// config validates the common options and fills in defaults.
func (o common) config(mux *Mux) (*config, int64, error) {
	var errs []error
	if o.sendQueue < 0 {
		errs = append(errs, errors.New("wsrpc: SendQueue must not be negative"))
	}
	if o.maxCalls < 0 {
		errs = append(errs, errors.New("wsrpc: MaxConcurrentCalls must not be negative"))
	}
	if o.keepAlive.Timeout < 0 {
		errs = append(errs, errors.New("wsrpc: KeepAlive.Timeout must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, 0, err
	}
	cfg := &config{
		mux:          mux,
		logger:       o.logger,
		onConnect:    o.onConnect,
		onDisconnect: o.onDisconnect,
		onError:      o.onError,
		callTimeout:  orDefault(o.callTimeout, DefaultCallTimeout),
		keepAlive:    o.keepAlive,
		binary:       o.binary,
		maxQueue:     int(orDefault(int64(o.sendQueue), DefaultSendQueue)),
		maxQueueSize: orDefault(o.sendBytes, DefaultSendQueueBytes),
		writeTimeout: orDefault(o.writeTimeout, DefaultWriteTimeout),
		closeTimeout: orDefault(o.closeTimeout, DefaultCloseTimeout),
		maxCalls:     int(orDefault(int64(o.maxCalls), DefaultMaxConcurrentCalls)),
		maxCallBytes: orDefault(o.maxCallBytes, DefaultMaxCallBytes),
		errorDetails: o.errorDetails,
		observer:     o.observer,
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	ka := &cfg.keepAlive
	ka.Interval = orDefault(ka.Interval, DefaultKeepAliveInterval)
	if ka.Timeout == 0 {
		ka.Timeout = ka.Interval
	}
	return cfg, orDefault(o.maxMessage, DefaultMaxMessageSize), nil
}

// orDefault maps zero to def and negative values to zero ("disabled").
func orDefault[T int64 | time.Duration](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}
