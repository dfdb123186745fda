package pubsub

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/wsrpc/wsrpc"
)

// TestNodesShareABroker: three nodes on one MemoryBroker. An event
// published on any node reaches every subscriber on every node once, in
// order per publisher; the publishing node delivers its own event once,
// not again from the broker; a message in the Python broadcaster's format
// from another process reaches them all.
func TestNodesShareABroker(t *testing.T) {
	ctx := ctxT(t)
	broker := NewMemoryBroker()
	var nodes []*node
	var cols []*collector
	for range 3 {
		n := newNode(t, &Options{Broker: broker}, nil)
		nodes = append(nodes, n)
		for range 2 {
			cl := dial(t, n.url, nil)
			c := newCollector()
			if err := cl.Subscribe(ctx, "orders", c.handle); err != nil {
				t.Fatal(err)
			}
			cols = append(cols, c)
		}
	}
	const k = 30
	var wg sync.WaitGroup
	for i, n := range nodes {
		pub := dial(t, n.url, nil)
		wg.Go(func() {
			for seq := range k {
				if err := pub.PublishWith(ctx, []string{"orders"}, map[string]int{"node": i, "seq": seq}, PublishOptions{NoSync: seq%3 == 0}); err != nil {
					t.Errorf("publish: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	for ci, c := range cols {
		next := map[int]int{}
		for range 3 * k {
			var v struct{ Node, Seq int }
			if err := recv(ctx, t, c.ch, "an event").Decode(&v); err != nil {
				t.Fatal(err)
			}
			if v.Seq != next[v.Node] {
				t.Fatalf("subscriber %d: node %d's event %d came when %d was next", ci, v.Node, v.Seq, next[v.Node])
			}
			next[v.Node]++
		}
	}
	// Another process's node, in Python's format: every node delivers it.
	py := `{"notifier_id": "1f0e2d3c4b5a69788796a5b4c3d2e1f0", "topics": ["orders"], "data": {"from": "redis"}}`
	if err := broker.Publish(ctx, BrokerChannel, []byte(py)); err != nil {
		t.Fatal(err)
	}
	for _, c := range cols {
		if ev := recv(ctx, t, c.ch, "the foreign event"); string(ev.Data) != `{"from": "redis"}` {
			t.Errorf("got %s, want the foreign event (an event twice?)", ev.Data)
		}
	}
	for _, c := range cols {
		select {
		case ev := <-c.ch:
			t.Errorf("an extra event: %s", ev.Data)
		default:
		}
	}
}

// flakyBroker is a Broker whose link is down until up is set: Publish and
// Subscribe fail with ErrBrokerUnavailable, and watchers are told.
type flakyBroker struct {
	MemoryBroker
	up       atomic.Bool
	tries    atomic.Int32
	mu       sync.Mutex
	watchers []func(error)
}

func (b *flakyBroker) Publish(ctx context.Context, ch string, msg []byte) error {
	if !b.up.Load() {
		return fmt.Errorf("flaky: %w", wsrpc.ErrBrokerUnavailable)
	}
	return b.MemoryBroker.Publish(ctx, ch, msg)
}

func (b *flakyBroker) Subscribe(ctx context.Context, ch string, fn func([]byte)) (func(), error) {
	b.tries.Add(1)
	if !b.up.Load() {
		return nil, fmt.Errorf("flaky: %w", wsrpc.ErrBrokerUnavailable)
	}
	return b.MemoryBroker.Subscribe(ctx, ch, fn)
}

func (b *flakyBroker) Watch(fn func(error)) func() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.watchers = append(b.watchers, fn)
	return func() {}
}

func (b *flakyBroker) set(up bool) {
	b.up.Store(up)
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, fn := range b.watchers {
		if up {
			fn(nil)
		} else {
			fn(fmt.Errorf("flaky: link lost: %w", wsrpc.ErrBrokerUnavailable))
		}
	}
}

// TestBrokerDown: a node whose broker is down serves its own subscribers,
// tells the publisher the event did not reach the broker
// (CodeBrokerUnavailable), keeps trying to subscribe until the broker is
// up, and reports all of it to the Observer.
func TestBrokerDown(t *testing.T) {
	ctx := ctxT(t)
	b := &flakyBroker{}
	obs := &countingObserver{}
	n := newNode(t, &Options{Broker: b, Observer: obs}, nil)
	c := newCollector()
	sub := dial(t, n.url, nil)
	if err := sub.Subscribe(ctx, "orders", c.handle); err != nil {
		t.Fatal(err)
	}
	pub := dial(t, n.url, nil)
	err := pub.Publish(ctx, []string{"orders"}, "local")
	if e, ok := errors.AsType[*wsrpc.Error](err); !ok || e.Code != CodeBrokerUnavailable {
		t.Errorf("Publish with the broker down = %v, want code %d", err, CodeBrokerUnavailable)
	}
	if ev := recv(ctx, t, c.ch, "the local event"); string(ev.Data) != `"local"` {
		t.Errorf("got %s", ev.Data)
	}
	if err := n.ps.Publish(ctx, []string{"orders"}, 1); !errors.Is(err, wsrpc.ErrBrokerUnavailable) {
		t.Errorf("Server.Publish with the broker down = %v, want ErrBrokerUnavailable", err)
	}
	if ev := recv(ctx, t, c.ch, "the application's local event"); string(ev.Data) != `1` {
		t.Errorf("got %s", ev.Data)
	}
	pollUntil(t, "two tries to subscribe", func() bool { return b.tries.Load() >= 2 })
	b.set(true)
	pollUntil(t, "the node to subscribe", func() bool { return obs.brokerUps.Load() >= 2 }) // the watcher's, and the subscription's
	if obs.brokerErrs.Load() < 3 {
		t.Errorf("Observer.Broker told of %d failures, want the tries and the publishes", obs.brokerErrs.Load())
	}
	// Now the broker carries other nodes' events here.
	other := NewServer(&Options{Broker: b, Logger: quiet()})
	defer other.Close()
	if err := other.Publish(ctx, []string{"orders"}, "from another node"); err != nil {
		t.Fatal(err)
	}
	if ev := recv(ctx, t, c.ch, "the other node's event"); string(ev.Data) != `"from another node"` {
		t.Errorf("got %s", ev.Data)
	}
}

// TestMemoryBroker: each subscription gets a channel's messages in order,
// one call at a time, and none once stop returned.
func TestMemoryBroker(t *testing.T) {
	ctx := ctxT(t)
	b := NewMemoryBroker()
	var mu sync.Mutex
	var got []string
	var running atomic.Int32
	stop, err := b.Subscribe(ctx, "ch", func(msg []byte) {
		if running.Add(1) > 1 {
			t.Error("two calls at once")
		}
		mu.Lock()
		got = append(got, string(msg))
		mu.Unlock()
		running.Add(-1)
	})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := b.Subscribe(ctx, "other", func([]byte) { t.Error("a message of another channel") })
	defer other()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				b.Publish(ctx, "ch", fmt.Appendf(nil, "%d-%d", g, i))
			}
		})
	}
	wg.Wait()
	stop()
	b.Publish(ctx, "ch", []byte("after stop"))
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 200 {
		t.Fatalf("got %d messages, want 200", len(got))
	}
	next := map[string]int{}
	for _, m := range got {
		var g, i int
		fmt.Sscanf(m, "%d-%d", &g, &i)
		if k := fmt.Sprint(g); i != next[k] {
			t.Fatalf("publisher %d's message %d came when %d was next", g, i, next[k])
		}
		next[fmt.Sprint(g)]++
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.Publish(canceled, "ch", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Publish with an ended ctx = %v", err)
	}
}

// smallBroker is a MemoryBroker that refuses messages over max bytes, as
// PostgreSQL's NOTIFY does over 8000.
type smallBroker struct {
	MemoryBroker
	max int
}

func (b *smallBroker) Publish(ctx context.Context, ch string, msg []byte) error {
	if len(msg) > b.max {
		return fmt.Errorf("small: %d bytes: %w", len(msg), wsrpc.ErrBrokerMessageTooLarge)
	}
	return b.MemoryBroker.Publish(ctx, ch, msg)
}

// TestEventTooLarge: an event larger than the broker carries reaches the
// node's own subscribers, and its publisher is told, with
// CodeEventTooLarge, that it went no further; a smaller one is published.
func TestEventTooLarge(t *testing.T) {
	ctx := ctxT(t)
	n := newNode(t, &Options{Broker: &smallBroker{max: 200}}, nil)
	c := newCollector()
	if err := dial(t, n.url, nil).Subscribe(ctx, "orders", c.handle); err != nil {
		t.Fatal(err)
	}
	pub := dial(t, n.url, nil)
	big := strings.Repeat("x", 300)
	err := pub.Publish(ctx, []string{"orders"}, big)
	if e, ok := errors.AsType[*wsrpc.Error](err); !ok || e.Code != CodeEventTooLarge {
		t.Errorf("Publish of an event too large for the broker = %v, want code %d", err, CodeEventTooLarge)
	}
	if ev := recv(ctx, t, c.ch, "the large event, locally"); string(ev.Data) != `"`+big+`"` {
		t.Errorf("got %s", ev.Data)
	}
	if err := pub.Publish(ctx, []string{"orders"}, "small"); err != nil {
		t.Errorf("Publish of a small event: %v", err)
	}
}
