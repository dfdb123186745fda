package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/wsrpc/wsrpc"
)

// Broker is a [wsrpc.Broker] and [wsrpc.BrokerWatcher] on one Redis
// server. Make one with [Dial] or [DialClient]; it is safe for concurrent
// use, and its creator closes it.
type Broker struct {
	client    *redis.Client
	ownClient bool // Dial made it: Close closes it
	opts      Options
	log       *slog.Logger
	ctx       context.Context // ends with Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup // the link's goroutines

	mu       sync.Mutex
	closed   bool
	sess     *session // the pub/sub connection, nil between two
	up       bool     // sess is set and every channel subscribed on it
	lastErr  error    // why the link is down
	chans    map[string]*channel
	watchers []*watcher // copy on write
}

var (
	_ wsrpc.Broker        = (*Broker)(nil)
	_ wsrpc.BrokerWatcher = (*Broker)(nil)
)

// channel is a Redis channel that subscriptions of this Broker want.
type channel struct {
	subs  []*subscription // copy on write, under Broker.mu
	ready chan struct{}   // closed once Redis confirmed SUBSCRIBE on the session
}

// subscription is one Subscribe: its mutex runs fn one call at a time, and
// lets stop wait for the call under way.
type subscription struct {
	mu      sync.Mutex
	stopped bool
	fn      func([]byte)
}

func (s *subscription) deliver(msg []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		s.fn(msg)
	}
}

// watcher is one Watch, as subscription is one Subscribe.
type watcher struct {
	mu      sync.Mutex
	stopped bool
	fn      func(error)
}

// Dial connects to the Redis server at url (redis://[user:password@]host:port/db,
// or rediss:// for TLS; see redis.ParseURL) and returns a Broker on it,
// once its pub/sub connection is up; ctx bounds that. The Broker's client
// never retries a command, so that a PUBLISH whose answer was lost is not
// sent twice; Close closes it.
func Dial(ctx context.Context, url string, opts *Options) (*Broker, error) {
	ro, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redisbroker: %w", err)
	}
	ro.MaxRetries = -1
	c := redis.NewClient(ro)
	b, err := dial(ctx, c, true, opts)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	return b, nil
}

// DialClient returns a Broker on client, once its pub/sub connection is
// up; ctx bounds that. Close leaves client open. For at-most-once
// delivery, client's MaxRetries should be -1: go-redis retries a command
// whose answer was lost, and a PUBLISH retried can arrive twice.
func DialClient(ctx context.Context, client *redis.Client, opts *Options) (*Broker, error) {
	return dial(ctx, client, false, opts)
}

func dial(ctx context.Context, client *redis.Client, own bool, opts *Options) (*Broker, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	b := &Broker{client: client, ownClient: own, opts: o, log: o.Logger, chans: map[string]*channel{}}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	s, err := b.connect(ctx)
	if err != nil {
		b.cancel()
		b.wg.Wait()
		return nil, fmt.Errorf("redisbroker: connect to %s: %w: %w", client.Options().Addr, wsrpc.ErrBrokerUnavailable, err)
	}
	b.wg.Go(func() { b.run(s) })
	return b, nil
}

// Publish sends msg on channel with PUBLISH, bounded by ctx, and returns
// once Redis took it. It fails with an error wrapping
// wsrpc.ErrBrokerMessageTooLarge if msg is longer than
// Options.MaxMessage, with one wrapping wsrpc.ErrBrokerUnavailable while
// the link to Redis is down or if it fails on the way (the message is
// then lost), and with one wrapping wsrpc.ErrClosed once the Broker is
// closed.
func (b *Broker) Publish(ctx context.Context, channel string, msg []byte) error {
	if b.opts.MaxMessage > 0 && len(msg) > b.opts.MaxMessage {
		return fmt.Errorf("redisbroker: publish on %q: %d bytes, more than MaxMessage (%d): %w", channel, len(msg), b.opts.MaxMessage, wsrpc.ErrBrokerMessageTooLarge)
	}
	b.mu.Lock()
	closed, up, why := b.closed, b.up, b.downErr()
	b.mu.Unlock()
	switch {
	case closed:
		return fmt.Errorf("redisbroker: publish on %q: %w", channel, wsrpc.ErrClosed)
	case !up:
		return fmt.Errorf("redisbroker: publish on %q: %w", channel, why)
	}
	err := b.client.Publish(ctx, channel, msg).Err()
	if err == nil {
		return nil
	}
	if _, ok := errors.AsType[redis.Error](err); ok || ctx.Err() != nil {
		// Redis refused it, or the caller gave up: the link is not at fault.
		return fmt.Errorf("redisbroker: publish on %q: %w", channel, err)
	}
	return fmt.Errorf("redisbroker: publish on %q: %w: %w", channel, wsrpc.ErrBrokerUnavailable, err)
}

// Subscribe calls fn with every message published on channel from the
// time it returns until stop is called, one call at a time, in the order
// Redis sent them; ctx bounds the wait for Redis to confirm a channel this
// Broker did not subscribe yet. Once stop returned fn is not called again;
// stop must not be called from fn. A subscription lives through outages:
// it misses what is published while the link is down, and hears the
// channel again once the Broker has reconnected. Subscribe fails with an
// error wrapping wsrpc.ErrBrokerUnavailable while the link is down, and
// with one wrapping wsrpc.ErrClosed once the Broker is closed.
func (b *Broker) Subscribe(ctx context.Context, name string, fn func(msg []byte)) (stop func(), err error) {
	if err := context.Cause(ctx); err != nil {
		return nil, fmt.Errorf("redisbroker: subscribe to %q: %w", name, err)
	}
	sub := &subscription{fn: fn}
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return nil, fmt.Errorf("redisbroker: subscribe to %q: %w", name, wsrpc.ErrClosed)
	case !b.up:
		why := b.downErr()
		b.mu.Unlock()
		return nil, fmt.Errorf("redisbroker: subscribe to %q: %w", name, why)
	}
	s := b.sess
	ch := b.chans[name]
	if ch == nil {
		ch = &channel{ready: make(chan struct{})}
		b.chans[name] = ch
		s.commandLocked(b.ctx, "subscribe", []string{name}, []chan struct{}{ch.ready})
	}
	ch.subs = append(slices.Clip(ch.subs), sub)
	ready := ch.ready
	b.mu.Unlock()

	var once sync.Once
	stop = func() { once.Do(func() { b.stop(name, ch, sub) }) }
	select {
	case <-ready:
		return stop, nil
	case <-s.done:
		stop()
		return nil, fmt.Errorf("redisbroker: subscribe to %q: %w", name, s.cause())
	case <-ctx.Done():
		stop()
		return nil, fmt.Errorf("redisbroker: subscribe to %q: %w", name, context.Cause(ctx))
	}
}

// downErr returns why the link is down, wrapping
// wsrpc.ErrBrokerUnavailable; b.mu is held.
func (b *Broker) downErr() error {
	if b.lastErr == nil {
		return wsrpc.ErrBrokerUnavailable
	}
	return b.lastErr
}

// stop ends sub, and unsubscribes its channel in Redis if it was the last
// one on it.
func (b *Broker) stop(name string, ch *channel, sub *subscription) {
	sub.mu.Lock()
	sub.stopped = true
	sub.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	i := slices.Index(ch.subs, sub)
	if i < 0 {
		return
	}
	ch.subs = slices.Delete(slices.Clone(ch.subs), i, i+1)
	if len(ch.subs) > 0 || b.chans[name] != ch {
		return
	}
	delete(b.chans, name)
	if b.sess != nil && !b.closed {
		b.sess.commandLocked(b.ctx, "unsubscribe", []string{name}, nil)
	}
}

// Watch registers fn, called one call at a time, from one goroutine of
// the Broker's, with an error wrapping wsrpc.ErrBrokerUnavailable when the
// link to Redis is lost, and with nil once it is back and every channel
// subscribed again. Once stop returned, fn is not called again; stop must
// not be called from fn.
func (b *Broker) Watch(fn func(err error)) (stop func()) {
	w := &watcher{fn: fn}
	b.mu.Lock()
	b.watchers = append(slices.Clip(b.watchers), w)
	b.mu.Unlock()
	return func() {
		w.mu.Lock()
		w.stopped = true
		w.mu.Unlock()
		b.mu.Lock()
		if i := slices.Index(b.watchers, w); i >= 0 {
			b.watchers = slices.Delete(slices.Clone(b.watchers), i, i+1)
		}
		b.mu.Unlock()
	}
}

// report tells every watcher of the link's state.
func (b *Broker) report(err error) {
	b.mu.Lock()
	ws := b.watchers
	b.mu.Unlock()
	for _, w := range ws {
		w.mu.Lock()
		if !w.stopped {
			w.fn(err)
		}
		w.mu.Unlock()
	}
}

// Close ends the Broker: its pub/sub connection, its goroutines (it
// returns once they have ended), and the client if Dial made it. The
// subscriptions are not called again; their stop functions may still be
// called. Close returns nil when called again.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed, b.up = true, false
	s := b.sess
	b.mu.Unlock()
	b.cancel()
	if s != nil {
		s.kill(wsrpc.ErrClosed)
	}
	b.wg.Wait()
	if b.ownClient {
		return b.client.Close()
	}
	return nil
}
