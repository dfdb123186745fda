package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/redis/go-redis/v9"

	"github.com/wsrpc/wsrpc"
)

// session is one pub/sub connection to Redis, from its connect until it
// fails or the Broker closes; the Broker then makes a new one. go-redis's
// PubSub would reconnect by itself and say nothing: a session never lets
// it, since it ends at the first error, and closes its PubSub.
type session struct {
	addr  string
	ps    *redis.PubSub
	done  chan struct{} // closed when the session ended
	once  sync.Once
	err   error       // why it ended, set before done is closed
	heard atomic.Bool // something came in since the last ping
	busy  atomic.Bool // the reader is calling subscriptions

	// replies expected to SUBSCRIBE and UNSUBSCRIBE, in the order the
	// commands were written (Redis answers in that order); under
	// Broker.mu.
	pending []pending
}

// pending is a reply a session waits for: kind ("subscribe" or
// "unsubscribe") on channel; ready, if not nil, is closed when it comes.
type pending struct {
	kind, channel string
	ready         chan struct{}
}

// kill ends the session with err (the first call wins) and closes its
// connection, which ends its reader.
func (s *session) kill(err error) {
	s.once.Do(func() {
		s.err = err
		close(s.done)
		_ = s.ps.Close()
	})
}

// cause returns why the session ended, wrapping
// wsrpc.ErrBrokerUnavailable (or wsrpc.ErrClosed); only once done is
// closed.
func (s *session) cause() error {
	if errors.Is(s.err, wsrpc.ErrClosed) {
		return s.err
	}
	return fmt.Errorf("%w: link to %s lost: %w", wsrpc.ErrBrokerUnavailable, s.addr, s.err)
}

// commandLocked writes kind (SUBSCRIBE or UNSUBSCRIBE) for channels, and
// records the replies to expect, ready[i] to close on channels[i]'s;
// Broker.mu is held, so that the records keep the order of the writes.
// A write that fails ends the session.
func (s *session) commandLocked(ctx context.Context, kind string, channels []string, ready []chan struct{}) {
	for i, ch := range channels {
		p := pending{kind: kind, channel: ch}
		if ready != nil {
			p.ready = ready[i]
		}
		s.pending = append(s.pending, p)
	}
	var err error
	if kind == "subscribe" {
		err = s.ps.Subscribe(ctx, channels...)
	} else {
		err = s.ps.Unsubscribe(ctx, channels...)
	}
	if err != nil {
		s.kill(fmt.Errorf("%s: %w", kind, err))
	}
}

// connect opens a session: a pub/sub connection that answered a ping, on
// which every channel wanted is subscribed, with its reader and pinger
// running. It returns once Redis confirmed every channel, and then the
// Broker is up.
func (b *Broker) connect(ctx context.Context) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, b.opts.ConnectTimeout)
	defer cancel()
	s := &session{addr: b.client.Options().Addr, ps: b.client.Subscribe(ctx), done: make(chan struct{})}
	// The first ping opens the connection, and its answer shows it works.
	err := s.ps.Ping(ctx)
	if err == nil {
		var m any
		m, err = s.ps.ReceiveTimeout(ctx, b.opts.ConnectTimeout)
		if _, ok := m.(*redis.Pong); err == nil && !ok {
			err = fmt.Errorf("got %v, want the answer to a ping", m)
		}
	}
	if err != nil {
		_ = s.ps.Close()
		return nil, err
	}
	s.heard.Store(true)

	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		_ = s.ps.Close()
		return nil, wsrpc.ErrClosed
	}
	b.sess = s
	names := slices.Sorted(maps.Keys(b.chans))
	ready := make([]chan struct{}, len(names))
	for i, n := range names {
		ready[i] = make(chan struct{})
		b.chans[n].ready = ready[i]
	}
	b.wg.Go(func() { b.read(s) })
	b.wg.Go(func() { b.ping(s) })
	if len(names) > 0 {
		s.commandLocked(b.ctx, "subscribe", names, ready)
	}
	b.mu.Unlock()

	for _, r := range ready {
		select {
		case <-r:
		case <-s.done:
			b.dropSession(s)
			return nil, s.err
		case <-ctx.Done():
			err := fmt.Errorf("subscribing %d channels: %w", len(names), context.Cause(ctx))
			s.kill(err)
			b.dropSession(s)
			return nil, err
		}
	}
	b.mu.Lock()
	if b.sess == s && !b.closed {
		b.up, b.lastErr = true, nil
	}
	b.mu.Unlock()
	return s, nil
}

// dropSession forgets s, which has ended: the Broker is down.
func (b *Broker) dropSession(s *session) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sess == s {
		b.sess, b.up = nil, false
		b.lastErr = s.cause()
	}
}

// run keeps the link up: when session s ends, it tells the watchers,
// reconnects with backoff, and tells them again once it is back; until
// the Broker closes.
func (b *Broker) run(s *session) {
	bo := &backoff.ExponentialBackOff{
		InitialInterval:     b.opts.Reconnect.InitialInterval,
		MaxInterval:         b.opts.Reconnect.MaxInterval,
		Multiplier:          2,
		RandomizationFactor: 0.5,
	}
	addr := s.addr
	for {
		<-s.done
		b.dropSession(s)
		if b.ctx.Err() != nil {
			return
		}
		lost := fmt.Errorf("redisbroker: %w", s.cause())
		b.log.Warn("redisbroker: link to Redis lost: publishing fails and subscriptions miss messages until it is back", "addr", addr, "err", lost)
		b.report(lost)
		bo.Reset()
		for try := 1; ; try++ {
			t := time.NewTimer(bo.NextBackOff())
			select {
			case <-t.C:
			case <-b.ctx.Done():
				t.Stop()
				return
			}
			var err error
			if s, err = b.connect(b.ctx); err == nil {
				b.log.Warn("redisbroker: link to Redis back, every channel subscribed again", "addr", addr, "tries", try)
				b.report(nil)
				break
			}
			if b.ctx.Err() != nil {
				return
			}
			b.log.Debug("redisbroker: reconnect failed", "addr", addr, "try", try, "err", err)
		}
	}
}

// read reads session s until it fails: messages go to the subscriptions
// of their channel, in order, and replies to SUBSCRIBE and UNSUBSCRIBE
// confirm what waits for them.
func (b *Broker) read(s *session) {
	for {
		m, err := s.ps.Receive(b.ctx)
		if err != nil {
			s.kill(fmt.Errorf("read: %w", err))
			return
		}
		s.heard.Store(true)
		switch m := m.(type) {
		case *redis.Message:
			b.dispatch(s, m.Channel, []byte(m.Payload))
		case *redis.Subscription:
			b.confirm(s, m)
		}
	}
}

func (b *Broker) dispatch(s *session, name string, msg []byte) {
	b.mu.Lock()
	var subs []*subscription
	if ch := b.chans[name]; ch != nil {
		subs = ch.subs
	}
	b.mu.Unlock()
	s.busy.Store(true)
	for _, sub := range subs {
		sub.deliver(msg)
	}
	s.busy.Store(false)
}

// confirm takes a reply to SUBSCRIBE or UNSUBSCRIBE: the first one
// expected. Any other means the session lost track, and ends it.
func (b *Broker) confirm(s *session, m *redis.Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(s.pending) == 0 || s.pending[0].kind != m.Kind || s.pending[0].channel != m.Channel {
		s.kill(fmt.Errorf("unexpected reply %s %q", m.Kind, m.Channel))
		return
	}
	if r := s.pending[0].ready; r != nil {
		close(r)
	}
	s.pending = s.pending[1:]
}

// ping pings session s every PingInterval, and ends it when nothing came
// in since the last ping and no subscription is being called.
func (b *Broker) ping(s *session) {
	if b.opts.PingInterval < 0 {
		return
	}
	t := time.NewTicker(b.opts.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-s.done:
			return
		}
		if !s.heard.Swap(false) && !s.busy.Load() {
			s.kill(fmt.Errorf("no answer to a ping within %v", b.opts.PingInterval))
			return
		}
		if err := s.ps.Ping(b.ctx); err != nil {
			s.kill(fmt.Errorf("ping: %w", err))
			return
		}
	}
}
