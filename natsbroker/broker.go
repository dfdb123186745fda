// Package natsbroker is a [wsrpc.Broker] on NATS, with nats.go: the nodes
// of a cluster share events (package pubsub) and messages (package
// cluster) through a NATS server or cluster.
//
//	b, err := natsbroker.New(ctx, "nats://127.0.0.1:4222", nil)
//	if err != nil {
//		return err
//	}
//	defer b.Close()
//	ps := pubsub.NewServer(&pubsub.Options{Broker: b})
//
// It keeps every point of the Broker contract:
//
//   - Subjects: a channel is a subject, mapped by [Subject] (the channels
//     wsrpc uses are subjects as they are: pubsub's "EventNotifier",
//     cluster's "wsrpc.node.<id>"), after Options.SubjectPrefix.
//   - At most once, ordered: NATS core delivers at most once, and keeps
//     the order of one connection's messages on a subject; each Broker
//     has one connection. nats.go calls a subscription's fn from one
//     goroutine of its own, one message at a time, in order.
//   - Publish returns once the server has the message: it writes it and
//     waits for the server's answer to a ping sent after it (a round trip
//     on the connection, shared by concurrent publishers' pings).
//   - Slow subscriptions: a subscription holds at most
//     Options.PendingMessages and PendingBytes that its fn has not taken
//     yet; past that nats.go drops what arrives (a slow consumer), which
//     the Broker logs, once per episode, and counts ([Broker.Dropped]).
//   - Outages: nats.go reconnects by itself, forever, with a backoff from
//     Options.ReconnectWait to MaxReconnectWait with jitter, and
//     re-subscribes. Nothing is buffered while the link is down
//     (nats.ReconnectBufSize(-1)): Publish fails with an error wrapping
//     [wsrpc.ErrBrokerUnavailable] and the message is lost. Watchers
//     ([Broker.Watch]) hear the loss, and nil once the link is back and
//     the server has every subscription again (a round trip after
//     nats.go re-subscribed).
//   - The first connect is not retried: [New] fails, with an error
//     wrapping ErrBrokerUnavailable, if no server answers within its
//     context. Retry New, or start the node once NATS is up.
//   - Size: the server's max_payload (1 MiB by default, learned from its
//     INFO; [Broker.MaxPayload]) bounds a message; a larger one fails
//     Publish with an error wrapping [wsrpc.ErrBrokerMessageTooLarge] and
//     nats.ErrMaxPayload, and is not sent.
package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	neturl "net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wsrpc/wsrpc"
)

var (
	_ wsrpc.Broker        = (*Broker)(nil)
	_ wsrpc.BrokerWatcher = (*Broker)(nil)
)

// ErrClosed: the Broker was closed.
var ErrClosed = errors.New("natsbroker: closed")

// ErrConnOptions: [NewConn] was given a connection that would buffer
// messages while disconnected, or give up reconnecting; make it with
// [NATSOptions].
var ErrConnOptions = errors.New("natsbroker: the connection must not buffer while disconnected and must reconnect forever")

// Options configure a Broker. A nil *Options means every default; the
// Broker copies it.
type Options struct {
	// NATS are nats.go options for the connection that [New] makes
	// (credentials, TLS, a name, more server URLs...). The ones the
	// Broker needs are applied after them and win: ReconnectBufSize(-1),
	// MaxReconnects(-1), AllowReconnect, the reconnect delay. Handlers set
	// here are still called, after the Broker's. NewConn ignores it.
	NATS []nats.Option
	// SubjectPrefix is put before every channel's subject, to keep apart
	// the applications that share one NATS: tokens of ASCII letters,
	// digits, '-' and '_', each followed by a dot ("app1."). Default none.
	SubjectPrefix string
	// PendingMessages and PendingBytes bound what one subscription holds
	// that its fn has not taken yet; past either, nats.go drops what
	// arrives. Defaults 65,536 messages and 64 MiB; negative: no bound.
	PendingMessages, PendingBytes int
	// ReconnectWait is the wait before the first reconnect attempt of an
	// outage; it doubles after each attempt up to MaxReconnectWait, and
	// each wait is drawn at random between half of it and all of it.
	// Defaults 100 ms and 5 s. NewConn ignores them.
	ReconnectWait, MaxReconnectWait time.Duration
	// Timeout bounds a Publish or Subscribe whose context has no deadline
	// (the wait for the server's answer), and the round trip that
	// confirms a recovery. Default 5 s.
	Timeout time.Duration
	// Logger gets the link's losses and recoveries and slow-consumer
	// drops, at Warn. Nil: slog.Default().
	Logger *slog.Logger
}

// withDefaults copies o, fills in the defaults and checks it.
func (o *Options) withDefaults() (Options, error) {
	var c Options
	if o != nil {
		c = *o
		c.NATS = append([]nats.Option(nil), o.NATS...)
	}
	var errs []error
	if !validPrefix(c.SubjectPrefix) {
		errs = append(errs, fmt.Errorf("natsbroker: SubjectPrefix %q: want tokens of ASCII letters, digits, '-' and '_', each followed by a dot", c.SubjectPrefix))
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"ReconnectWait", &c.ReconnectWait, 100 * time.Millisecond},
		{"MaxReconnectWait", &c.MaxReconnectWait, 5 * time.Second},
		{"Timeout", &c.Timeout, 5 * time.Second},
	} {
		if *d.v < 0 {
			errs = append(errs, fmt.Errorf("natsbroker: %s must not be negative", d.name))
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	c.MaxReconnectWait = max(c.MaxReconnectWait, c.ReconnectWait)
	if c.PendingMessages == 0 {
		c.PendingMessages = 65536
	}
	if c.PendingBytes == 0 {
		c.PendingBytes = 64 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, errors.Join(errs...)
}

// NATSOptions returns the nats.go options that a connection given to
// [NewConn] needs: nothing buffered while disconnected
// (ReconnectBufSize(-1)), reconnects forever, with o's backoff. Pass them
// after your own to nats.Connect.
func NATSOptions(o *Options) []nats.Option {
	c, _ := o.withDefaults()
	return natsOptions(c)
}

func natsOptions(c Options) []nats.Option {
	return []nats.Option{
		nats.ReconnectBufSize(-1),
		nats.MaxReconnects(-1),
		func(o *nats.Options) error { o.AllowReconnect = true; return nil },
		nats.CustomReconnectDelay(func(attempts int) time.Duration {
			d := c.MaxReconnectWait
			if attempts < 32 {
				d = min(c.ReconnectWait<<(attempts-1), c.MaxReconnectWait)
			}
			return d/2 + rand.N(d/2+1)
		}),
	}
}

// Broker is a [wsrpc.Broker] and [wsrpc.BrokerWatcher] on one NATS
// connection. It is safe for concurrent use.
type Broker struct {
	nc     *nats.Conn
	owned  bool // New made nc: Close closes it
	opts   Options
	log    *slog.Logger
	ctx    context.Context // ends with Close
	cancel context.CancelFunc

	natsClosed chan struct{} // closed by nc's closed handler (owned only)
	closeOnce  sync.Once
	signal     chan struct{} // wakes the state loop
	loopDone   chan struct{}

	mu       sync.Mutex // guards the following
	closed   bool
	subs     map[*subscription]struct{}
	watchers map[int]func(error)
	nextW    int
	losses   uint64 // disconnects seen by the handler
	lastErr  error  // the last disconnect's cause
	dropped  uint64 // slow-consumer drops of subscriptions already stopped

	slow atomic.Uint64 // slow-consumer episodes, for tests
}

// New connects to the NATS server at url (a nats:// URL, or several
// separated by commas) and returns a Broker that owns the connection.
// ctx bounds the first connect only: if no server answers within it,
// New fails with an error wrapping [wsrpc.ErrBrokerUnavailable] (and
// nats.go's, e.g. nats.ErrNoServers). Later losses are reconnected
// forever.
func New(ctx context.Context, url string, opts *Options) (*Broker, error) {
	c, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("natsbroker: connect to %s: %w", redact(url), err)
	}
	no := nats.GetDefaultOptions()
	no.Url = url
	for _, o := range c.NATS {
		if err := o(&no); err != nil {
			return nil, fmt.Errorf("natsbroker: nats option: %w", err)
		}
	}
	for _, o := range natsOptions(c) {
		_ = o(&no)
	}
	b := newBroker(c)
	b.owned = true
	b.natsClosed = make(chan struct{})
	prevClosed := no.ClosedCB
	no.ClosedCB = func(nc *nats.Conn) {
		if prevClosed != nil {
			prevClosed(nc)
		}
		if !b.isClosed() {
			b.log.Error("natsbroker: nats.go closed the connection for good: publishing fails until a new Broker is made", "err", nc.LastError())
		}
		b.closeOnce.Do(func() { close(b.natsClosed) })
	}
	no.DisconnectedErrCB = b.disconnectHandler(no.DisconnectedErrCB)
	no.ReconnectedCB = b.reconnectHandler(no.ReconnectedCB)
	no.AsyncErrorCB = b.errorHandler(no.AsyncErrorCB)
	// The first connect is bounded by ctx: the dialer dials with it, and
	// closes the connection if ctx ends during the handshake.
	d := &firstDialer{ctx: ctx}
	if no.Dialer != nil {
		d.dialer = *no.Dialer
	}
	if d.dialer.Timeout == 0 {
		d.dialer.Timeout = no.Timeout
	}
	if no.CustomDialer == nil {
		no.CustomDialer = d
	}
	nc, err := no.Connect()
	if !d.done() && err == nil {
		nc.Close()
		err = ctx.Err()
	}
	if err != nil {
		b.cancel()
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("%w: %w", cerr, err)
		}
		return nil, fmt.Errorf("natsbroker: connect to %s: %w (%w)", redact(url), wsrpc.ErrBrokerUnavailable, err)
	}
	b.start(nc)
	return b, nil
}

// NewConn returns a Broker on nc, which the caller made with
// [NATSOptions] among its options (else NewConn fails with
// [ErrConnOptions]) and closes after the Broker. The Broker adds its
// handlers to nc's (disconnect, reconnect, async errors), which it keeps
// calling. Several Brokers may share one connection.
func NewConn(nc *nats.Conn, opts *Options) (*Broker, error) {
	c, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if nc.Opts.ReconnectBufSize != -1 || nc.Opts.MaxReconnect >= 0 || !nc.Opts.AllowReconnect {
		return nil, ErrConnOptions
	}
	if nc.IsClosed() {
		return nil, ErrClosed
	}
	b := newBroker(c)
	nc.SetDisconnectErrHandler(b.disconnectHandler(nc.DisconnectErrHandler()))
	nc.SetReconnectHandler(b.reconnectHandler(nc.ReconnectHandler()))
	nc.SetErrorHandler(b.errorHandler(nc.ErrorHandler()))
	b.start(nc)
	return b, nil
}

func newBroker(c Options) *Broker {
	b := &Broker{
		opts:     c,
		log:      c.Logger,
		signal:   make(chan struct{}, 1),
		loopDone: make(chan struct{}),
		subs:     map[*subscription]struct{}{},
		watchers: map[int]func(error){},
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b
}

func (b *Broker) start(nc *nats.Conn) {
	b.nc = nc
	go b.stateLoop()
}

// Conn returns the Broker's NATS connection.
func (b *Broker) Conn() *nats.Conn { return b.nc }

// MaxPayload returns the largest message the server carries, in bytes
// (its max_payload).
func (b *Broker) MaxPayload() int { return int(b.nc.MaxPayload()) }

// Dropped returns how many messages the Broker's subscriptions have
// dropped as slow consumers (their fn too slow for what arrives; see
// Options.PendingMessages).
func (b *Broker) Dropped() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.dropped
	for s := range b.subs {
		n += s.droppedNow()
	}
	return n
}

// Close stops every subscription, waits until none of their fn is
// running, and, if [New] made the connection, closes it and waits for
// nats.go's callbacks to end. It does not close a connection given to
// [NewConn]. After Close, Publish and Subscribe fail with [ErrClosed].
// nats.go's reader and flusher goroutines of a closed connection end
// right after (nats.go does not wait for them).
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	subs := make([]*subscription, 0, len(b.subs))
	for s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	b.cancel()
	if b.owned {
		b.nc.Close()
	}
	for _, s := range subs {
		s.stop()
	}
	<-b.loopDone
	if b.owned {
		<-b.natsClosed
	}
	return nil
}

func (b *Broker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// subject returns the subject of a channel, prefix included.
func (b *Broker) subject(channel string) (string, error) {
	s, err := Subject(channel)
	if err != nil {
		return "", err
	}
	s = b.opts.SubjectPrefix + s
	if len(s) > MaxSubject {
		return "", fmt.Errorf("%w: its subject has %d bytes, more than %d", ErrChannel, len(s), MaxSubject)
	}
	return s, nil
}

// unavailable wraps err as the link being down, unless the Broker is
// closed.
func (b *Broker) unavailable(op, channel string, err error) error {
	if b.isClosed() {
		return fmt.Errorf("natsbroker: %s %q: %w", op, channel, ErrClosed)
	}
	if err == nil {
		return fmt.Errorf("natsbroker: %s %q: link %s: %w", op, channel, b.nc.Status(), wsrpc.ErrBrokerUnavailable)
	}
	return fmt.Errorf("natsbroker: %s %q: %w (%w)", op, channel, wsrpc.ErrBrokerUnavailable, err)
}

// roundTrip waits until the server has processed what the connection sent
// so far, bounded by ctx (or Options.Timeout if ctx has no deadline).
func (b *Broker) roundTrip(ctx context.Context, op, channel string) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.opts.Timeout)
		defer cancel()
	}
	err := b.nc.FlushWithContext(ctx)
	switch {
	case err == nil:
		return nil
	case b.nc.Status() != nats.CONNECTED, errors.Is(err, nats.ErrConnectionClosed):
		return b.unavailable(op, channel, err)
	default:
		return fmt.Errorf("natsbroker: %s %q: waiting for the server: %w", op, channel, err)
	}
}

// Publish sends msg on channel's subject and waits until the server has
// it, bounded by ctx (or Options.Timeout). While the link is down it
// fails at once with an error wrapping [wsrpc.ErrBrokerUnavailable]: the
// message is lost. A message larger than [Broker.MaxPayload] fails with
// one wrapping [wsrpc.ErrBrokerMessageTooLarge], unsent; a channel that
// cannot be a subject with [ErrChannel].
func (b *Broker) Publish(ctx context.Context, channel string, msg []byte) error {
	subj, err := b.subject(channel)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("natsbroker: publish %q: %w", channel, err)
	}
	if b.isClosed() {
		return fmt.Errorf("natsbroker: publish %q: %w", channel, ErrClosed)
	}
	if st := b.nc.Status(); st != nats.CONNECTED {
		return b.unavailable("publish", channel, nil)
	}
	if limit := b.nc.MaxPayload(); int64(len(msg)) > limit {
		return b.tooLarge(channel, len(msg), nats.ErrMaxPayload)
	}
	if err := b.nc.Publish(subj, msg); err != nil {
		if errors.Is(err, nats.ErrMaxPayload) {
			return b.tooLarge(channel, len(msg), err)
		}
		return b.unavailable("publish", channel, err)
	}
	return b.roundTrip(ctx, "publish", channel)
}

func (b *Broker) tooLarge(channel string, n int, err error) error {
	return fmt.Errorf("natsbroker: publish %q: %d bytes, the server's max_payload is %d: %w (%w)",
		channel, n, b.nc.MaxPayload(), wsrpc.ErrBrokerMessageTooLarge, err)
}

// subscription is one Subscribe's: its nats.go subscription, and what
// makes stop wait for fn.
type subscription struct {
	b       *Broker
	channel string
	done    chan struct{}      // closed when nats.go's goroutine for it ended
	sub     *nats.Subscription // guarded by b.mu; nil until made
	tracked bool               // done will be closed; guarded by b.mu

	fnMu    sync.Mutex // held while fn runs
	stopped bool
	once    sync.Once
}

// Subscribe subscribes fn to channel's subject and returns once the server
// has the subscription, bounded by ctx (or Options.Timeout). nats.go calls
// fn from a goroutine of the subscription's own, one message at a time;
// stop ends it and waits until fn is not running. While the link is down
// Subscribe fails with an error wrapping [wsrpc.ErrBrokerUnavailable].
func (b *Broker) Subscribe(ctx context.Context, channel string, fn func(msg []byte)) (func(), error) {
	subj, err := b.subject(channel)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("natsbroker: subscribe %q: %w", channel, err)
	}
	if b.nc.Status() != nats.CONNECTED {
		return nil, b.unavailable("subscribe", channel, nil)
	}
	s := &subscription{b: b, channel: channel, done: make(chan struct{})}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, fmt.Errorf("natsbroker: subscribe %q: %w", channel, ErrClosed)
	}
	// Registered before the nats.go subscription exists, so that Close
	// stops it whatever happens next.
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	sub, err := b.nc.Subscribe(subj, func(m *nats.Msg) {
		s.fnMu.Lock()
		defer s.fnMu.Unlock()
		if !s.stopped {
			fn(m.Data)
		}
	})
	if err != nil {
		b.forget(s)
		return nil, b.unavailable("subscribe", channel, err)
	}
	sub.SetClosedHandler(func(string) { close(s.done) })
	// nats.go calls the closed handler when the subscription's goroutine
	// ends, if it was set before that goroutine looked for it: it was if
	// the subscription is still valid now.
	tracked := sub.IsValid()
	b.mu.Lock()
	s.sub, s.tracked = sub, tracked
	_, live := b.subs[s]
	b.mu.Unlock()
	if !live { // Close came meanwhile
		s.release(sub, tracked)
		return nil, fmt.Errorf("natsbroker: subscribe %q: %w", channel, ErrClosed)
	}
	if err := sub.SetPendingLimits(b.opts.PendingMessages, b.opts.PendingBytes); err != nil {
		s.stop()
		return nil, b.unavailable("subscribe", channel, err)
	}
	if err := b.roundTrip(ctx, "subscribe", channel); err != nil {
		s.stop()
		return nil, err
	}
	return s.stop, nil
}

func (b *Broker) forget(s *subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.subs, s)
}

func (s *subscription) droppedNow() uint64 {
	if s.sub == nil {
		return 0
	}
	n, err := s.sub.Dropped()
	if err != nil || n < 0 {
		return 0
	}
	return uint64(n)
}

// stop unsubscribes, and waits until fn is not running and nats.go's
// goroutine for the subscription has ended.
func (s *subscription) stop() {
	s.once.Do(func() {
		b := s.b
		b.mu.Lock()
		_, registered := b.subs[s]
		delete(b.subs, s)
		if registered {
			b.dropped += s.droppedNow()
		}
		sub, tracked := s.sub, s.tracked
		b.mu.Unlock()
		if sub != nil { // else Subscribe has not made it yet, and will release it
			s.release(sub, tracked)
		}
	})
}

// release ends the nats.go subscription sub.
func (s *subscription) release(sub *nats.Subscription, tracked bool) {
	_ = sub.Unsubscribe() // fails only if nc is closed, which has ended the subscription
	s.fnMu.Lock()
	s.stopped = true
	s.fnMu.Unlock()
	if tracked {
		<-s.done
	}
}

// redact returns urls (one or several, comma-separated) without their
// passwords and tokens, for messages.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if u, err := neturl.Parse(p); err == nil && u.User != nil {
			u.User = neturl.User("redacted")
			p = u.String()
		}
		parts[i] = p
	}
	return strings.Join(parts, ",")
}

// firstDialer dials the first connection with New's context, and every
// later one (reconnects) with nats.go's timeout only.
type firstDialer struct {
	ctx    context.Context
	mu     sync.Mutex
	over   bool          // the first connect is over
	stops  []func() bool // the AfterFuncs closing the first connect's conns
	dialer net.Dialer
}

func (d *firstDialer) Dial(network, addr string) (net.Conn, error) {
	d.mu.Lock()
	first := !d.over
	d.mu.Unlock()
	nd := d.dialer
	if !first {
		return nd.Dial(network, addr)
	}
	c, err := nd.DialContext(d.ctx, network, addr)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(d.ctx, func() { c.Close() })
	d.mu.Lock()
	d.stops = append(d.stops, stop)
	d.mu.Unlock()
	return c, nil
}

// done ends the first connect: it reports false if ctx ended meanwhile
// and closed the connection.
func (d *firstDialer) done() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.over = true
	ok := true
	for _, stop := range d.stops {
		if !stop() {
			ok = false
		}
	}
	d.stops = nil
	return ok
}
