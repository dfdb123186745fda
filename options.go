package wsrpc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
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

// The defaults of RetryOptions.
const (
	defaultRetryInitialInterval = 100 * time.Millisecond
	defaultRetryMaxInterval     = 120 * time.Second
)

// KeepAlive configures liveness checks on a connection. Every Interval a
// side sends a WebSocket ping (and a client also calls the peer's _ping_
// method, as the Python client does); a connection from which nothing at
// all has arrived for Interval+Timeout is dead and is closed, and a client
// then reconnects. The check runs with each ping, so the connection is
// closed less than one Interval after that.
type KeepAlive struct {
	// Interval between pings. Zero means DefaultKeepAliveInterval (30 s);
	// negative disables keep-alive.
	Interval time.Duration
	// Timeout is how long past an Interval the peer may stay silent. Zero
	// means the same as Interval; it must not be negative.
	Timeout time.Duration
}

// RetryOptions configures how a [Client] retries connecting, on [Dial] and
// on every reconnect: jittered exponential backoff. The wait after the
// first try is InitialInterval, and it doubles after each try, up to
// MaxInterval; each wait is then randomized to between half and one and a
// half times that (with the defaults, the first wait is 50 to 150 ms). A
// reconnect's first try is at once. Some answers are final
// and never retried, whatever the options: 401 and 403, and certificate
// failures, always; on Dial's first connect also the answers that say the
// URL names no WebSocket endpoint (400, 404, 405, 410, 426, 501, and any
// 2xx or 3xx). Reconnects retry those. [Dial] gives the whole rule.
//
// None of its fields may be negative, and InitialInterval must not exceed
// MaxInterval.
type RetryOptions struct {
	// InitialInterval is the first wait. Zero means 100 ms.
	InitialInterval time.Duration
	// MaxInterval caps the wait between tries, before the jitter (a wait
	// is at most 1.5 × MaxInterval). Zero means 120 s.
	MaxInterval time.Duration
	// MaxTries caps the tries of one connect. Zero means no cap (Dial is
	// still bounded by its context).
	MaxTries int
	// MaxElapsedTime caps the time one connect may take with all its
	// tries: no try starts later. Zero means no cap.
	MaxElapsedTime time.Duration
}

// ConnOptions configures each connection of a [Server] or a [Client]: its
// hooks, logger, timeouts and limits. [ServerOptions] and [DialOptions]
// embed it, so its fields are set on either the same way (opts.KeepAlive),
// and in a literal through the embedded field:
//
//	&wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{CallTimeout: time.Minute}}
//
// Every zero field means its documented default; a negative duration or
// byte limit disables what it bounds, as each field's doc says. Where a
// field does something different on a server and on a client, its doc
// says both. [NewServer] and [Dial] check the options the same way and
// report every invalid field in one error.
type ConnOptions struct {
	// OnConnect runs when a connection opens, in its own goroutine while
	// calls already flow on that connection; it may call the peer, with c.
	// An error closes the connection (status 1011). On a client it runs
	// on every new connection, the first and each reconnect: Dial returns
	// after it returned, and a reconnect's connection becomes the
	// client's (Client.Conn, Client.Call, the calls WaitForReady holds)
	// only once it and the registered hooks returned, so that they may
	// restore state first. Its error fails Dial, or on a reconnect closes
	// that connection (the client then tries again).
	OnConnect func(ctx context.Context, c *Conn) error
	// OnDisconnect runs once per connection after it ended and its
	// handlers returned, with the cause; on a client, once for each
	// connection, the first and each reconnect.
	OnDisconnect func(c *Conn, err error)
	// OnError receives errors no caller waits for: bad frames from the
	// peer, handler panics (*PanicError), handler errors that are not
	// *Error, and results that cannot be encoded. It must not block.
	OnError func(c *Conn, err error)
	// Logger receives the logs of the Server or the Client. Nil means
	// slog.Default(); use slog.New(slog.DiscardHandler) to silence it.
	// Only what needs an operator, and reaches no caller as an error, is
	// logged above Debug:
	//   - Error: a handler panicked (with the stack; OnError gets a
	//     *PanicError too); a client gave up reconnecting for good (a
	//     final answer, or Retry's MaxTries or MaxElapsedTime ran out;
	//     Done and Err tell too).
	//   - Debug, on both sides: connections opened and closed, whatever
	//     the cause (OnDisconnect gets it, keep-alive timeouts included);
	//     bad frames from a peer (OnError gets them, and a peer must not
	//     be able to flood the log); frames dropped because the
	//     connection ended; answers to no pending call.
	//   - Debug, on a server: upgrades refused by Authenticate, the Origin
	//     check, MaxConns, MaxConnsPerAddr or a shutdown (the client gets
	//     the status).
	//   - Debug, on a client: reconnecting, each connect try that failed
	//     (Dial returns the error of its first connect), the end of a
	//     client with DisableReconnect.
	//
	// Nothing is logged at Info or Warn.
	Logger *slog.Logger

	// CallTimeout bounds the calls to the peer whose context has no
	// deadline; on a client it includes any wait for a connection
	// (WaitForReady). Zero means DefaultCallTimeout (30 s); negative:
	// none.
	CallTimeout time.Duration
	// KeepAlive configures pings to the peer; see [KeepAlive].
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
	// it is full. Zero means DefaultSendQueue (256); it must not be
	// negative.
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
	// [Client.Close], [Server.Close], [Server.Shutdown]) waits for the
	// peer's close frame after sending its own, before it closes the
	// socket. Zero means DefaultCloseTimeout (2 s); negative: don't wait
	// (the socket closes as soon as the close frame is written).
	// Client.Close, Server.Close and Shutdown also wait at most this long
	// for handlers that have not returned once their context was
	// canceled.
	CloseTimeout time.Duration
	// MaxConcurrentCalls bounds the calls from the peer that run at once
	// on one connection; a call over it is answered at once with a
	// CodeServerError error (ErrTooManyCalls). Zero means
	// DefaultMaxConcurrentCalls (1024); it must not be negative.
	MaxConcurrentCalls int
	// MaxCallBytes bounds the memory that the peer's running calls hold on
	// one connection: a call's request stays in memory until its handler
	// returns, and then its answer until the send queue has room for it.
	// A call that would go over it is answered at once with a
	// CodeServerError error (ErrTooManyCalls); a call arriving while no
	// other call runs is always taken, so one message of MaxMessageSize
	// always fits. With MaxMessageSize and SendQueueBytes it bounds a
	// connection's memory (see docs/security.md). Zero means
	// DefaultMaxCallBytes (16 MiB); negative: no limit.
	MaxCallBytes int64
	// SendErrorDetails sends the text of handler errors that are not
	// *Error to the peer. By default the peer gets "internal error" and
	// the text goes only to OnError, so that internals (paths, addresses,
	// queries) do not leak.
	SendErrorDetails bool
	// Observer, if set, watches the connections: calls both ways,
	// frames, the send queue, connects and disconnects; on a client it
	// also sees each connect try. See [Observer].
	Observer Observer
}

// withDefaults returns a copy of o with every default filled in, and an
// error joining every problem found, nil if there is none. It is the one
// place where the options both sides share are defaulted and checked;
// config embeds its result. A field that a negative value disables stays
// negative (everything that reads it tests for > 0), so the result means
// the same as o, and filling it again changes nothing.
func (o ConnOptions) withDefaults() (ConnOptions, error) {
	var errs []error
	errs = appendNegative(errs, "SendQueue", o.SendQueue)
	errs = appendNegative(errs, "MaxConcurrentCalls", o.MaxConcurrentCalls)
	errs = appendNegative(errs, "KeepAlive.Timeout", o.KeepAlive.Timeout)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.CallTimeout = orDefault(o.CallTimeout, DefaultCallTimeout)
	o.KeepAlive.Interval = orDefault(o.KeepAlive.Interval, DefaultKeepAliveInterval)
	if o.KeepAlive.Interval > 0 && o.KeepAlive.Timeout == 0 {
		o.KeepAlive.Timeout = o.KeepAlive.Interval
	}
	o.MaxMessageSize = orDefault(o.MaxMessageSize, DefaultMaxMessageSize)
	o.SendQueue = orDefault(o.SendQueue, DefaultSendQueue)
	o.SendQueueBytes = orDefault(o.SendQueueBytes, DefaultSendQueueBytes)
	o.WriteTimeout = orDefault(o.WriteTimeout, DefaultWriteTimeout)
	o.CloseTimeout = orDefault(o.CloseTimeout, DefaultCloseTimeout)
	o.MaxConcurrentCalls = orDefault(o.MaxConcurrentCalls, DefaultMaxConcurrentCalls)
	o.MaxCallBytes = orDefault(o.MaxCallBytes, DefaultMaxCallBytes)
	return o, errors.Join(errs...)
}

// ServerOptions configures a [Server]. A nil *ServerOptions, and every zero
// field, means the documented default.
type ServerOptions struct {
	// ConnOptions configures each connection: hooks, logger, timeouts and
	// limits, the same as a client's.
	ConnOptions

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
	// (non-browser clients) are always accepted. A malformed pattern is
	// an error.
	OriginPatterns []string
	// InsecureSkipOriginCheck accepts every Origin. Leave it false unless
	// another layer checks origins.
	InsecureSkipOriginCheck bool

	// MaxConns caps the connections open at once; more are refused with
	// 503. Zero means no cap; it must not be negative.
	MaxConns int
	// MaxConnsPerAddr caps the connections open at once from one remote
	// IP address (as net/http sees it: put the real client address in
	// RemoteAddr behind a proxy); more are refused with 503. Zero means no
	// cap; it must not be negative.
	MaxConnsPerAddr int
	// HandshakeTimeout bounds writing the upgrade response, which only
	// blocks for a client that does not read while the socket's buffers
	// are full. Zero means DefaultHandshakeTimeout (10 s); negative: none.
	// Reading the request is net/http's: set
	// http.Server.ReadHeaderTimeout, which net/http leaves unset.
	HandshakeTimeout time.Duration
}

// withDefaults returns a copy of o, the caller's slices copied too, with
// every default filled in, and an error joining every problem found, its
// ConnOptions' first.
func (o ServerOptions) withDefaults() (ServerOptions, error) {
	conn, err := o.ConnOptions.withDefaults()
	errs := []error{err}
	o.ConnOptions = conn
	o.OriginPatterns = append([]string(nil), o.OriginPatterns...)
	for _, p := range o.OriginPatterns {
		if _, err := path.Match(strings.ToLower(p), ""); err != nil {
			errs = append(errs, fmt.Errorf("wsrpc: OriginPatterns: %q: %w", p, err))
		}
	}
	errs = appendNegative(errs, "MaxConns", o.MaxConns)
	errs = appendNegative(errs, "MaxConnsPerAddr", o.MaxConnsPerAddr)
	o.HandshakeTimeout = orDefault(o.HandshakeTimeout, DefaultHandshakeTimeout)
	return o, errors.Join(errs...)
}

// DialOptions configures a [Client]. A nil *DialOptions, and every zero
// field, means the documented default.
type DialOptions struct {
	// ConnOptions configures each connection, the first and each
	// reconnect: hooks, logger, timeouts and limits, the same as a
	// server's.
	ConnOptions

	// Methods are the methods the client exposes to the server. Nil
	// exposes only the built-ins.
	Methods *Mux

	// Header is sent with every upgrade request (for example a token).
	// Dial copies it.
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
	// Zero means DefaultHandshakeTimeout (10 s); negative: none.
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
}

// withDefaults returns a copy of o, its Header copied too, with every
// default filled in, and an error joining every problem found, its
// ConnOptions' first.
func (o DialOptions) withDefaults() (DialOptions, error) {
	conn, err := o.ConnOptions.withDefaults()
	errs := []error{err}
	o.ConnOptions = conn
	o.Header = o.Header.Clone()
	if o.Proxy == nil {
		o.Proxy = http.ProxyFromEnvironment
	}
	if o.NetDialContext == nil {
		o.NetDialContext = new(net.Dialer).DialContext
	}
	o.HandshakeTimeout = orDefault(o.HandshakeTimeout, DefaultHandshakeTimeout)
	r := &o.Retry
	errs = appendNegative(errs, "Retry.InitialInterval", r.InitialInterval)
	errs = appendNegative(errs, "Retry.MaxInterval", r.MaxInterval)
	errs = appendNegative(errs, "Retry.MaxTries", r.MaxTries)
	errs = appendNegative(errs, "Retry.MaxElapsedTime", r.MaxElapsedTime)
	r.InitialInterval = orDefault(r.InitialInterval, defaultRetryInitialInterval)
	r.MaxInterval = orDefault(r.MaxInterval, defaultRetryMaxInterval)
	if r.InitialInterval > r.MaxInterval {
		errs = append(errs, fmt.Errorf("wsrpc: Retry.InitialInterval (%v) must not exceed Retry.MaxInterval (%v)", r.InitialInterval, r.MaxInterval))
	}
	return o, errors.Join(errs...)
}

// orDefault maps zero to def; other values, negative ones included, stay.
// appendNegative appends to errs the error for field name, if its value v
// is negative.
func appendNegative[T int | int64 | time.Duration](errs []error, name string, v T) []error {
	if v < 0 {
		errs = append(errs, errors.New("wsrpc: "+name+" must not be negative"))
	}
	return errs
}

func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}
