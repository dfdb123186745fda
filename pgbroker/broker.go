package pgbroker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wsrpc/wsrpc"
)

// The defaults of Options.
const (
	DefaultPingInterval     = 15 * time.Second
	DefaultTimeout          = 10 * time.Second
	defaultInitialInterval  = 100 * time.Millisecond
	defaultMaxInterval      = 10 * time.Second
	defaultApplicationName  = "wsrpc pgbroker"
	applicationNameParamKey = "application_name"
)

// Options configures a [Broker]. The zero value, like a nil *Options,
// means every default.
type Options struct {
	// Pool is the pool the Broker publishes through; it must reach the
	// same PostgreSQL server as the listening connection. The caller
	// owns it: Close leaves it open. Nil means a pool of the Broker's
	// own, opened from the URL given to New (pgxpool's defaults: at
	// most 4 connections, or one per CPU if more), which Close closes.
	Pool *pgxpool.Pool
	// Logger receives the Broker's logs: the listening connection lost
	// and back (Warn), each failed try to reconnect (Info). Nil means
	// slog.Default(); use slog.New(slog.DiscardHandler) to silence it.
	Logger *slog.Logger
	// PingInterval is how long the listening connection may stay idle
	// before the Broker checks it with a ping, so that a link that died
	// without closing (a host gone, a network cut) is noticed. Zero means
	// DefaultPingInterval (15 s); negative disables the pings (the
	// operating system's TCP keep-alive then notices, in minutes).
	PingInterval time.Duration
	// Timeout bounds each connect, LISTEN, UNLISTEN and ping on the
	// listening connection (New's connect is bounded by its context
	// too). Zero means DefaultTimeout (10 s); it must not be negative.
	Timeout time.Duration
	// Reconnect is the backoff between tries to reconnect the listening
	// connection once it is lost.
	Reconnect ReconnectOptions
}

// ReconnectOptions configures the backoff between tries to reconnect:
// the first try is at once, the wait after it InitialInterval, doubling
// after each try up to MaxInterval, each wait randomized to between half
// and one and a half times that. Neither may be negative, and
// InitialInterval must not exceed MaxInterval.
type ReconnectOptions struct {
	// InitialInterval is the first wait. Zero means 100 ms.
	InitialInterval time.Duration
	// MaxInterval caps the wait, before the randomization. Zero means
	// 10 s.
	MaxInterval time.Duration
}

// withDefaults returns a copy of o with every default filled in, or the
// error that lists every invalid field.
func (o *Options) withDefaults() (Options, error) {
	var c Options
	if o != nil {
		c = *o
	}
	var errs []error
	r := &c.Reconnect
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"Timeout", c.Timeout}, {"Reconnect.InitialInterval", r.InitialInterval}, {"Reconnect.MaxInterval", r.MaxInterval}} {
		if f.v < 0 {
			errs = append(errs, errors.New("pgbroker: "+f.name+" must not be negative"))
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.PingInterval == 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if r.InitialInterval == 0 {
		r.InitialInterval = defaultInitialInterval
	}
	if r.MaxInterval == 0 {
		r.MaxInterval = max(defaultMaxInterval, r.InitialInterval)
	}
	if r.InitialInterval > r.MaxInterval && r.MaxInterval > 0 {
		errs = append(errs, errors.New("pgbroker: Reconnect.InitialInterval must not exceed Reconnect.MaxInterval"))
	}
	return c, errors.Join(errs...)
}

// Broker is a [wsrpc.Broker] on PostgreSQL's LISTEN and NOTIFY, and a
// [wsrpc.BrokerWatcher]. It keeps one connection of its own for
// listening, on which it LISTENs to each channel that has subscriptions
// (several subscriptions of one channel share its LISTEN) and UNLISTENs
// when the last one stops; it publishes with SELECT pg_notify($1, $2)
// through a pool (see [Options].Pool). Channel names go to PostgreSQL as
// [ChannelName] maps them; messages as [MaxMessage] says.
//
// It keeps the contract of wsrpc.Broker:
//   - At most once: a NOTIFY reaches each subscription once; nothing is
//     stored or redelivered.
//   - Ordered per channel: PostgreSQL delivers notifications in the order
//     their transactions committed, and each Publish commits before it
//     returns.
//   - One goroutine reads the listening connection and calls the
//     subscriptions' functions, one at a time, in the order the
//     notifications came: a slow fn delays every subscription of this
//     Broker (and PostgreSQL keeps the notifications queued meanwhile).
//     The subscriptions of one channel share one copy of each message.
//   - The publishing node hears its own messages: a Broker's
//     subscriptions get what it publishes, like everyone else's.
//   - Outages: when the listening connection is lost (the server stopped
//     or crashed, the network cut: see [Options].PingInterval), the
//     Broker tells its watchers (an error wrapping
//     wsrpc.ErrBrokerUnavailable), reconnects with backoff (see
//     [Options].Reconnect), LISTENs again to every channel, and then
//     tells its watchers nil. Meanwhile Subscribe and Publish fail at
//     once with an error wrapping wsrpc.ErrBrokerUnavailable, and what
//     other nodes publish is lost to this Broker's subscriptions. A
//     Publish that fails to reach the server also wraps
//     ErrBrokerUnavailable: the message is lost, and the publisher knows.
//   - Size: a message larger than [MaxMessage] (text) or
//     [MaxBinaryMessage] (other bytes) fails Publish with an error
//     wrapping wsrpc.ErrBrokerMessageTooLarge, and is not sent.
//
// A Broker is safe for concurrent use. Its creator closes it with Close.
type Broker struct {
	opts     Options
	log      *slog.Logger
	connCfg  *pgx.ConnConfig // of the listening connection
	pool     *pgxpool.Pool
	ownPool  bool
	ascii    bool // the database's encoding takes only ASCII text unchanged
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup // the listening and the watching goroutines
	watching chan struct{}  // gets a value when reports are queued

	mu sync.Mutex // guards the following
	// channels holds the channels that have subscriptions, by
	// PostgreSQL name.
	channels map[string]*pgChannel
	closed   bool
	// down is nil while the listening connection is up and every
	// channel LISTENed once (after a reconnect), else why not; it wraps
	// wsrpc.ErrBrokerUnavailable.
	down error
	// lost is closed when the listening connection is lost, and replaced
	// once it is back.
	lost chan struct{}
	// dirty says that the channels changed since the listening
	// goroutine last LISTENed and UNLISTENed; interrupt, if not nil,
	// ends its wait for notifications so that it does.
	dirty bool
	// check asks the listening goroutine to ping its connection now.
	check     bool
	interrupt context.CancelFunc
	watchers  map[*watcher]struct{}
	reports   []report // queued for the watching goroutine
}

var (
	_ wsrpc.Broker        = (*Broker)(nil)
	_ wsrpc.BrokerWatcher = (*Broker)(nil)
)

// pgChannel is one PostgreSQL channel that has subscriptions.
type pgChannel struct {
	// subs is copied on write, so that the listening goroutine may call
	// a snapshot of it without holding Broker.mu.
	subs []*subscription
	// ready is closed once the channel is LISTENed on the current
	// listening connection.
	ready    chan struct{}
	listened bool
}

// subscription is one Subscribe: its mutex runs fn one call at a time
// and lets stop wait for the call under way.
type subscription struct {
	mu      sync.Mutex
	fn      func([]byte)
	stopped bool
}

// New returns a Broker on the PostgreSQL server at url (a pgx connection
// string: "postgres://user:password@host:5432/db?sslmode=disable", or
// key=value pairs) once its listening connection is up, bounded by ctx and
// opts.Timeout. It fails if it cannot connect: with an error wrapping
// wsrpc.ErrBrokerUnavailable if the server cannot be reached, or with the
// server's answer (authentication, an unknown database). From then on it
// reconnects by itself. url may be empty when opts.Pool is set: the
// listening connection then uses the pool's connection settings.
func New(ctx context.Context, url string, opts *Options) (*Broker, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	b := &Broker{
		opts:     o,
		log:      o.Logger,
		pool:     o.Pool,
		channels: make(map[string]*pgChannel),
		watchers: make(map[*watcher]struct{}),
		lost:     make(chan struct{}),
		watching: make(chan struct{}, 1),
	}
	switch {
	case url == "" && o.Pool == nil:
		return nil, errors.New("pgbroker: no URL, and no Options.Pool")
	case url == "":
		b.connCfg = o.Pool.Config().ConnConfig
	default:
		if b.connCfg, err = pgx.ParseConfig(url); err != nil {
			return nil, fmt.Errorf("pgbroker: %w", err)
		}
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.prepare(b.connCfg)
	conn, err := b.connect(ctx)
	if err != nil {
		b.cancel()
		return nil, err
	}
	if b.pool == nil {
		cfg, err := pgxpool.ParseConfig(url)
		if err == nil {
			b.prepare(cfg.ConnConfig)
			// A connection that pgx closed in the background may wait
			// up to 15 s for a silent server: let go of it at once.
			cfg.BeforeClose = func(c *pgx.Conn) {
				if c.IsClosed() {
					_ = c.PgConn().Conn().Close()
				}
			}
			b.pool, err = pgxpool.NewWithConfig(context.WithoutCancel(ctx), cfg)
		}
		if err != nil {
			b.cancel()
			<-abandon(conn).PgConn().CleanupDone()
			return nil, fmt.Errorf("pgbroker: %w", err)
		}
		b.ownPool = true
	}
	switch enc := conn.PgConn().ParameterStatus("server_encoding"); enc {
	case "UTF8", "SQL_ASCII":
	default:
		b.ascii = true
		b.log.Info("pgbroker: the database's encoding is not UTF8: messages that are not ASCII go in base64", "server_encoding", enc)
	}
	b.wg.Go(func() { b.listen(conn) })
	b.wg.Go(b.watch)
	return b, nil
}

// prepare sets what the Broker needs in the config of its connections:
// an application_name (unless the URL has one), and dials that end when
// the Broker closes (pgx also dials to cancel a query on a connection
// that broke, in the background).
func (b *Broker) prepare(cfg *pgx.ConnConfig) {
	if _, ok := cfg.RuntimeParams[applicationNameParamKey]; !ok {
		cfg.RuntimeParams[applicationNameParamKey] = defaultApplicationName
	}
	dial := cfg.DialFunc
	if dial == nil {
		dial = (&net.Dialer{KeepAlive: 5 * time.Minute}).DialContext
	}
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(b.ctx, cancel)()
		return dial(ctx, network, addr)
	}
}

// connect opens a listening connection, bounded by ctx and opts.Timeout.
func (b *Broker) connect(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, b.opts.Timeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, b.connCfg)
	if err != nil {
		return nil, classify("connect", err)
	}
	return conn, nil
}

// Publish sends msg on channel with pg_notify, through the pool, bounded
// by ctx; it returns once the notification is committed. Its error wraps
// wsrpc.ErrBrokerMessageTooLarge for a message too large (nothing was
// sent), wsrpc.ErrBrokerUnavailable while the listening connection is
// down or if the server could not be reached, wsrpc.ErrClosed after
// Close, and ctx's error if ctx ended first; another error is the
// server's answer (a *pgconn.PgError). A Publish that failed did not
// reach the subscribers; one whose ctx ended, or whose connection broke,
// while the server was running it may have.
func (b *Broker) Publish(ctx context.Context, channel string, msg []byte) error {
	payload, ok := encodePayload(msg, b.ascii)
	if !ok {
		limit := MaxMessage
		if !asText(msg, b.ascii) {
			limit = MaxBinaryMessage
		}
		return fmt.Errorf("pgbroker: publish on %q: a message of %d bytes, over NOTIFY's limit of %d: %w",
			channel, len(msg), limit, wsrpc.ErrBrokerMessageTooLarge)
	}
	b.mu.Lock()
	closed, down := b.closed, b.down
	b.mu.Unlock()
	switch {
	case closed:
		return fmt.Errorf("pgbroker: publish on %q: %w", channel, wsrpc.ErrClosed)
	case down != nil:
		return fmt.Errorf("pgbroker: publish on %q: %w", channel, down)
	}
	name := ChannelName(channel)
	_, err := b.pool.Exec(ctx, "SELECT pg_notify($1, $2)", name, payload)
	if err != nil && pgconn.SafeToRetry(err) && ctx.Err() == nil {
		// Nothing was sent (a pooled connection that the server had
		// closed): one more try cannot deliver the message twice.
		_, err = b.pool.Exec(ctx, "SELECT pg_notify($1, $2)", name, payload)
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("pgbroker: publish on %q: %w", channel, context.Cause(ctx))
		}
		err = classify(fmt.Sprintf("publish on %q", channel), err)
		if b.ctx.Err() != nil {
			return fmt.Errorf("pgbroker: publish on %q: %w", channel, wsrpc.ErrClosed)
		}
		if errors.Is(err, wsrpc.ErrBrokerUnavailable) {
			// The listening connection may be gone too: check it now.
			b.mu.Lock()
			b.check = true
			b.pokeLocked()
			b.mu.Unlock()
		}
		return err
	}
	return nil
}

// classify wraps err, an error of pgx while doing what, with
// wsrpc.ErrBrokerUnavailable unless it is the server's answer to the
// statement: a network error, a connection refused or broken, the server
// shutting down or refusing connections.
func classify(what string, err error) error {
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			strings.HasPrefix(pgErr.Code, "57P"), // shutting down, crashed, starting up
			pgErr.Code == "53300":                // too many connections
		default:
			return fmt.Errorf("pgbroker: %s: %w", what, err)
		}
	}
	return fmt.Errorf("pgbroker: %s: %w: %w", what, wsrpc.ErrBrokerUnavailable, err)
}

// Subscribe calls fn with every message published on channel from the
// time it returns until stop is called. It returns once the listening
// connection LISTENs to channel (at once if another subscription of
// this Broker already has it), bounded by ctx. Its error wraps
// wsrpc.ErrBrokerUnavailable while the listening connection is down,
// wsrpc.ErrClosed after Close, and ctx's error if ctx ended first.
//
// fn runs on the Broker's listening goroutine, one call at a time; it may
// keep msg and must not modify it. Once stop returned, fn is not called
// again; stop must not be called from fn. Stopping the last subscription
// of a channel UNLISTENs it, without waiting.
func (b *Broker) Subscribe(ctx context.Context, channel string, fn func(msg []byte)) (stop func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pgbroker: subscribe to %q: %w", channel, err)
	}
	name := ChannelName(channel)
	s := &subscription{fn: fn}
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return nil, fmt.Errorf("pgbroker: subscribe to %q: %w", channel, wsrpc.ErrClosed)
	case b.down != nil:
		err := b.down
		b.mu.Unlock()
		return nil, fmt.Errorf("pgbroker: subscribe to %q: %w", channel, err)
	}
	ch := b.channels[name]
	if ch == nil {
		ch = &pgChannel{ready: make(chan struct{})}
		b.channels[name] = ch
		b.pokeLocked()
	}
	ch.subs = append(ch.subs[:len(ch.subs):len(ch.subs)], s)
	ready, lost := ch.ready, b.lost
	b.mu.Unlock()
	var once sync.Once
	stop = func() { once.Do(func() { b.unsubscribe(name, s) }) }
	select {
	case <-ready:
		return stop, nil
	case <-lost:
		stop()
		b.mu.Lock()
		err := b.down
		b.mu.Unlock()
		if err == nil {
			err = fmt.Errorf("pgbroker: %w: listening connection lost", wsrpc.ErrBrokerUnavailable)
		}
		return nil, fmt.Errorf("pgbroker: subscribe to %q: %w", channel, err)
	case <-ctx.Done():
		stop()
		return nil, fmt.Errorf("pgbroker: subscribe to %q: %w", channel, context.Cause(ctx))
	case <-b.ctx.Done():
		stop()
		return nil, fmt.Errorf("pgbroker: subscribe to %q: %w", channel, wsrpc.ErrClosed)
	}
}

// unsubscribe removes s from the channel named name, and waits for a call
// of its fn under way.
func (b *Broker) unsubscribe(name string, s *subscription) {
	b.mu.Lock()
	if ch := b.channels[name]; ch != nil {
		subs := make([]*subscription, 0, len(ch.subs))
		for _, o := range ch.subs {
			if o != s {
				subs = append(subs, o)
			}
		}
		ch.subs = subs
		if len(subs) == 0 {
			delete(b.channels, name)
			b.pokeLocked()
		}
	}
	b.mu.Unlock()
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
}

// pokeLocked tells the listening goroutine to bring its LISTENs up to
// date.
func (b *Broker) pokeLocked() {
	b.dirty = true
	if b.interrupt != nil {
		b.interrupt()
		b.interrupt = nil
	}
}

// Close stops the Broker: it closes the listening connection, and the
// pool if it is the Broker's own, and returns once the Broker's
// goroutines have ended. No subscription's fn and no watcher is called
// after it returned. Publish and Subscribe then fail with an error
// wrapping wsrpc.ErrClosed; the subscriptions' stop functions may still
// be called. Close may be called more than once.
func (b *Broker) Close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.wg.Wait()
		return
	}
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
	if b.ownPool {
		b.pool.Close()
	}
}

// abandon closes conn, telling the server if it still can, and closes
// its socket, which ends pgx's cleanup of a connection that broke (that
// cleanup may still be dialing to cancel a query, until the Broker
// closes: wait for conn.PgConn().CleanupDone()). It returns conn.
func abandon(conn *pgx.Conn) *pgx.Conn {
	if !conn.IsClosed() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = conn.Close(ctx)
		cancel()
	}
	_ = conn.PgConn().Conn().Close()
	return conn
}
