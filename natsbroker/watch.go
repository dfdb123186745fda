package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wsrpc/wsrpc"
)

// Watch registers fn, called with an error wrapping
// [wsrpc.ErrBrokerUnavailable] when the link to the NATS server is lost,
// and with nil once it is back and the server has every subscription
// again. The calls come one at a time, from the Broker's own goroutine;
// fn must not call stop or Close. After stop returns fn is not called again,
// except a call already under way. Close ends the watching.
func (b *Broker) Watch(fn func(err error)) (stop func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := b.nextW
	b.nextW++
	b.watchers[id] = fn
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(b.watchers, id)
	}
}

// wake tells the state loop to look at the link.
func (b *Broker) wake() {
	select {
	case b.signal <- struct{}{}:
	default:
	}
}

// disconnectHandler counts a loss of the link, then calls prev.
func (b *Broker) disconnectHandler(prev nats.ConnErrHandler) nats.ConnErrHandler {
	return func(nc *nats.Conn, err error) {
		b.mu.Lock()
		if !b.closed {
			b.losses++
			b.lastErr = err
		}
		b.mu.Unlock()
		b.wake()
		if prev != nil {
			prev(nc, err)
		}
	}
}

// reconnectHandler wakes the state loop, then calls prev.
func (b *Broker) reconnectHandler(prev nats.ConnHandler) nats.ConnHandler {
	return func(nc *nats.Conn) {
		b.wake()
		if prev != nil {
			prev(nc)
		}
	}
}

// errorHandler logs nats.go's asynchronous errors, slow-consumer drops
// among them (once per episode: nats.go reports again only after the
// subscription caught up), then calls prev.
func (b *Broker) errorHandler(prev nats.ErrHandler) nats.ErrHandler {
	return func(nc *nats.Conn, sub *nats.Subscription, err error) {
		if s := b.find(sub); s != nil {
			if errors.Is(err, nats.ErrSlowConsumer) {
				b.slow.Add(1)
				b.log.Warn("natsbroker: slow subscription: messages dropped", "channel", s.channel,
					"dropped", s.droppedNow(), "pending_messages", b.opts.PendingMessages, "pending_bytes", b.opts.PendingBytes)
			} else {
				b.log.Warn("natsbroker: subscription error", "channel", s.channel, "err", err)
			}
		} else if sub == nil && !b.isClosed() {
			b.log.Warn("natsbroker: connection error", "err", err)
		}
		if prev != nil {
			prev(nc, sub, err)
		}
	}
}

// find returns the Broker's subscription whose nats.go subscription is
// sub, or nil.
func (b *Broker) find(sub *nats.Subscription) *subscription {
	if sub == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		if s.sub == sub {
			return s
		}
	}
	return nil
}

// stateLoop reports the link's losses and recoveries to the log and the
// watchers. nats.go's handlers only count and wake it: a recovery is
// reported once a round trip on the new link succeeded, which tells that
// the server has processed the subscriptions nats.go sent again.
func (b *Broker) stateLoop() {
	defer close(b.loopDone)
	var seen uint64 // losses reported
	up := true
	var retry <-chan time.Time
	for {
		select {
		case <-b.signal:
		case <-retry:
		case <-b.ctx.Done():
			return
		}
		if b.ctx.Err() != nil {
			return
		}
		retry = nil
		b.mu.Lock()
		losses, lastErr := b.losses, b.lastErr
		b.mu.Unlock()
		if losses != seen {
			seen = losses
			if up {
				up = false
				err := fmt.Errorf("natsbroker: link to the NATS server lost: %w", wsrpc.ErrBrokerUnavailable)
				if lastErr != nil {
					err = fmt.Errorf("natsbroker: link to the NATS server lost: %w (%w)", wsrpc.ErrBrokerUnavailable, lastErr)
				}
				b.log.Warn("natsbroker: link lost: publishing fails and subscriptions miss messages until it is back", "err", err)
				b.report(err)
			}
		}
		if up || b.nc.Status() != nats.CONNECTED {
			continue
		}
		ctx, cancel := context.WithTimeout(b.ctx, b.opts.Timeout)
		err := b.nc.FlushWithContext(ctx)
		cancel()
		if err != nil {
			retry = time.After(b.opts.ReconnectWait)
			continue
		}
		b.mu.Lock()
		again := b.losses != seen
		b.mu.Unlock()
		if again {
			b.wake()
			continue
		}
		up = true
		b.log.Warn("natsbroker: link back, subscriptions restored", "server", b.nc.ConnectedUrlRedacted())
		b.report(nil)
	}
}

// report calls every watcher with err, one after another.
func (b *Broker) report(err error) {
	b.mu.Lock()
	ids := make([]int, 0, len(b.watchers))
	for id := range b.watchers {
		ids = append(ids, id)
	}
	b.mu.Unlock()
	slices.Sort(ids)
	for _, id := range ids {
		b.mu.Lock()
		fn := b.watchers[id]
		b.mu.Unlock()
		if fn != nil {
			fn(err)
		}
	}
}
