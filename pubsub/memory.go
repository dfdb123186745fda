package pubsub

import (
	"bytes"
	"context"
	"maps"
	"slices"
	"sync"

	"github.com/wsrpc/wsrpc"
)

// MemoryBroker is a [wsrpc.Broker] within one process: what is published
// on a channel reaches the subscriptions to it in this process. It is what
// a [Server] uses when [Options].Broker is nil (one of its own, so the
// node is alone); several Servers sharing one behave as nodes of a
// cluster, as over Redis. It keeps the contract of wsrpc.Broker: each
// subscription gets a channel's messages one at a time, in the order they
// were published (Publish calls fn before it returns), at most once.
// Nothing can go down, so it has no size limit and is no BrokerWatcher.
//
// The zero value is ready to use. A MemoryBroker is safe for concurrent
// use.
type MemoryBroker struct {
	mu   sync.RWMutex
	subs map[string]map[*memorySub]struct{}
}

var _ wsrpc.Broker = (*MemoryBroker)(nil)

// memorySub is one subscription: its mutex runs fn one call at a time and
// lets stop wait for the call under way.
type memorySub struct {
	mu      sync.Mutex
	fn      func([]byte)
	stopped bool
}

// NewMemoryBroker returns an empty MemoryBroker.
func NewMemoryBroker() *MemoryBroker { return new(MemoryBroker) }

// Publish calls the function of every subscription to channel with a copy
// of msg, and returns once they returned. It fails only when ctx has
// ended.
func (b *MemoryBroker) Publish(ctx context.Context, channel string, msg []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.RLock()
	subs := slices.Collect(maps.Keys(b.subs[channel]))
	b.mu.RUnlock()
	if len(subs) == 0 {
		return nil
	}
	msg = bytes.Clone(msg) // the subscribers may keep it
	for _, s := range subs {
		s.mu.Lock()
		if !s.stopped {
			s.fn(msg)
		}
		s.mu.Unlock()
	}
	return nil
}

// Subscribe registers fn for channel's messages. It fails only when ctx
// has ended.
func (b *MemoryBroker) Subscribe(ctx context.Context, channel string, fn func(msg []byte)) (stop func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &memorySub{fn: fn}
	b.mu.Lock()
	if b.subs == nil {
		b.subs = make(map[string]map[*memorySub]struct{})
	}
	if b.subs[channel] == nil {
		b.subs[channel] = make(map[*memorySub]struct{})
	}
	b.subs[channel][s] = struct{}{}
	b.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs[channel], s)
			if len(b.subs[channel]) == 0 {
				delete(b.subs, channel)
			}
			b.mu.Unlock()
			s.mu.Lock() // waits for a call of fn under way
			s.stopped = true
			s.mu.Unlock()
		})
	}, nil
}
