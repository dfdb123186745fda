package brokertest

import (
	"context"
	"fmt"
	"sync"

	"testing"

	"go.uber.org/goleak"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/pubsub"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestMemoryBroker runs the suite on pubsub.MemoryBroker, which shares
// one broker between the nodes of one process (no outage, no size limit).
func TestMemoryBroker(t *testing.T) {
	b := pubsub.NewMemoryBroker()
	Run(t, Harness{New: func(testing.TB) wsrpc.Broker { return b }})
}

// switchable is a MemoryBroker behind a link that the test takes down
// and brings back: while it is down Publish fails, nothing is delivered,
// and the watchers are told.
type switchable struct {
	*pubsub.MemoryBroker
	mu       sync.Mutex
	down     bool
	watchers map[int]func(error)
	next     int
}

func (s *switchable) isDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down
}

func (s *switchable) Publish(ctx context.Context, ch string, msg []byte) error {
	if s.isDown() {
		return fmt.Errorf("switchable: %w", wsrpc.ErrBrokerUnavailable)
	}
	return s.MemoryBroker.Publish(ctx, ch, msg)
}

func (s *switchable) Subscribe(ctx context.Context, ch string, fn func([]byte)) (func(), error) {
	if s.isDown() {
		return nil, fmt.Errorf("switchable: %w", wsrpc.ErrBrokerUnavailable)
	}
	return s.MemoryBroker.Subscribe(ctx, ch, func(msg []byte) {
		if !s.isDown() {
			fn(msg)
		}
	})
}

func (s *switchable) Watch(fn func(error)) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.watchers == nil {
		s.watchers = map[int]func(error){}
	}
	id := s.next
	s.next++
	s.watchers[id] = fn
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.watchers, id)
	}
}

func (s *switchable) set(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
	var err error
	if down {
		err = fmt.Errorf("switchable: link lost: %w", wsrpc.ErrBrokerUnavailable)
	}
	for _, fn := range s.watchers {
		fn(err)
	}
}

// TestSwitchable runs the suite, outages included, on a broker whose link
// the test cuts: the suite's own check.
func TestSwitchable(t *testing.T) {
	b := &switchable{MemoryBroker: pubsub.NewMemoryBroker()}
	Run(t, Harness{
		New:   func(testing.TB) wsrpc.Broker { return b },
		Stop:  func() { b.set(true) },
		Start: func() { b.set(false) },
	})
}
