// Package brokertest is the conformance suite of [wsrpc.Broker]: the tests
// of each adapter (redisbroker, natsbroker, pgbroker) run it against a real
// server of their broker, which the test started. It checks the contract
// that wsrpc.Broker's doc comment states, and pub/sub on three nodes that
// share the broker.
package brokertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsrpc/wsrpc"
)

// Harness is what the suite needs of an adapter.
type Harness struct {
	// New returns a new Broker on the test's server, with a link of its
	// own: one per node. It closes it when the test ends.
	New func(t testing.TB) wsrpc.Broker
	// Stop takes the broker's server away (clients see their links
	// drop), and Start brings it back on the same address. Nil: the
	// outage tests are skipped.
	Stop, Start func()
	// MaxMessage is the size in bytes of the largest message the broker
	// carries; 0 means the suite tests no limit.
	MaxMessage int
}

// Run runs every test of the suite as subtests of t.
func Run(t *testing.T, h Harness) {
	t.Run("Order", func(t *testing.T) { testOrder(t, h) })
	t.Run("Channels", func(t *testing.T) { testChannels(t, h) })
	t.Run("Stop", func(t *testing.T) { testStop(t, h) })
	t.Run("Bytes", func(t *testing.T) { testBytes(t, h) })
	t.Run("Size", func(t *testing.T) { testSize(t, h) })
	t.Run("PubSubNodes", func(t *testing.T) { testPubSubNodes(t, h) })
	t.Run("Cluster", func(t *testing.T) { RunCluster(t, h.New) })
	// The outage tests stop the shared server: they run last, and alone.
	t.Run("Outage", func(t *testing.T) { testOutage(t, h) })
	t.Run("PubSubOutage", func(t *testing.T) { testPubSubOutage(t, h) })
}

// Ctx returns a context that ends with the test, after 30 s at the latest.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// sink records what one subscription received, and fails the test if fn
// is ever called twice at once.
type sink struct {
	t       testing.TB
	running atomic.Int32
	mu      sync.Mutex
	msgs    [][]byte
	changed chan struct{} // gets a value after each message, without blocking
}

func newSink(t testing.TB) *sink { return &sink{t: t, changed: make(chan struct{}, 1)} }

func (s *sink) fn(msg []byte) {
	if s.running.Add(1) > 1 {
		s.t.Error("fn called again before it returned")
	}
	s.mu.Lock()
	s.msgs = append(s.msgs, bytes.Clone(msg))
	s.mu.Unlock()
	s.running.Add(-1)
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func (s *sink) snapshot() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.msgs...)
}

// waitFor waits until the sink has n messages, or ctx ends.
func (s *sink) waitFor(ctx context.Context, n int, what string) [][]byte {
	s.t.Helper()
	for {
		if got := s.snapshot(); len(got) >= n {
			return got
		}
		select {
		case <-s.changed:
		case <-ctx.Done():
			s.t.Fatalf("waiting for %s: %d of %d messages: %v", what, len(s.snapshot()), n, ctx.Err())
		}
	}
}

// subscribe subscribes fn on b and stops it when the test ends.
func subscribe(t testing.TB, ctx context.Context, b wsrpc.Broker, ch string, fn func([]byte)) func() {
	t.Helper()
	stop, err := b.Subscribe(ctx, ch, fn)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", ch, err)
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(stop) })
	return func() { once.Do(stop) }
}

// channel names a channel of its own for one test: adapters share a
// server between subtests, and a channel name tells who it is for.
func channel(name string) string {
	return fmt.Sprintf("brokertest.%s.%d", name, time.Now().UnixNano())
}

// testOrder: three nodes, each subscribed; two of them publish concurrently.
// Every subscription, the publisher's own included, gets every message
// once, in each publisher's order.
func testOrder(t *testing.T, h Harness) {
	ctx := Ctx(t)
	ch := channel("order")
	var nodes []wsrpc.Broker
	var sinks []*sink
	for range 3 {
		b := h.New(t)
		s := newSink(t)
		subscribe(t, ctx, b, ch, s.fn)
		nodes, sinks = append(nodes, b), append(sinks, s)
	}
	const k = 200
	var wg sync.WaitGroup
	for p := range 2 {
		wg.Go(func() {
			for i := range k {
				if err := nodes[p].Publish(ctx, ch, fmt.Appendf(nil, `{"p":%d,"i":%d}`, p, i)); err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	for si, s := range sinks {
		got := s.waitFor(ctx, 2*k, "every message")
		next := [2]int{}
		for _, m := range got {
			var p, i int
			if _, err := fmt.Sscanf(string(m), `{"p":%d,"i":%d}`, &p, &i); err != nil {
				t.Fatalf("subscription %d: message %q: %v", si, m, err)
			}
			if i != next[p] {
				t.Fatalf("subscription %d: publisher %d's message %d came when %d was next (lost, repeated or reordered)", si, p, i, next[p])
			}
			next[p]++
		}
		if len(got) != 2*k {
			t.Errorf("subscription %d: %d messages, want %d", si, len(got), 2*k)
		}
	}
}

// testChannels: a subscription hears its own channel only, and two
// subscriptions of one node on one channel each hear every message.
func testChannels(t *testing.T, h Harness) {
	ctx := Ctx(t)
	a, b := channel("a"), channel("b")
	node := h.New(t)
	sa1, sa2, sb := newSink(t), newSink(t), newSink(t)
	subscribe(t, ctx, node, a, sa1.fn)
	subscribe(t, ctx, node, a, sa2.fn)
	subscribe(t, ctx, node, b, sb.fn)
	pub := h.New(t)
	for i := range 5 {
		if err := pub.Publish(ctx, a, fmt.Appendf(nil, "a%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Publish(ctx, b, []byte("b0")); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*sink{sa1, sa2} {
		got := s.waitFor(ctx, 5, "channel a's messages")
		for i, m := range got {
			if want := fmt.Sprintf("a%d", i); string(m) != want {
				t.Errorf("channel a: message %d is %q, want %q", i, m, want)
			}
		}
	}
	if got := sb.waitFor(ctx, 1, "channel b's message"); len(got) != 1 || string(got[0]) != "b0" {
		t.Errorf("channel b heard %q, want only b0", got)
	}
	// b0 was published after every message of a and has arrived: were one
	// of a's to leak into b, it would be there by now (per-node order).
	if got := sb.snapshot(); len(got) != 1 {
		t.Errorf("channel b heard %q, want only b0", got)
	}
}

// testStop: once stop returned, fn is not called again, while another
// subscription of the same node and channel goes on.
func testStop(t *testing.T, h Harness) {
	ctx := Ctx(t)
	ch := channel("stop")
	node := h.New(t)
	stopped, kept := newSink(t), newSink(t)
	stop := subscribe(t, ctx, node, ch, stopped.fn)
	subscribe(t, ctx, node, ch, kept.fn)
	pub := h.New(t)
	if err := pub.Publish(ctx, ch, []byte("before")); err != nil {
		t.Fatal(err)
	}
	stopped.waitFor(ctx, 1, "the message before stop")
	kept.waitFor(ctx, 1, "the message before stop")
	stop()
	for _, m := range []string{"after1", "after2"} {
		if err := pub.Publish(ctx, ch, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	kept.waitFor(ctx, 3, "the messages after stop")
	if got := stopped.snapshot(); len(got) != 1 {
		t.Errorf("a stopped subscription got %q after stop", got[1:])
	}
}

// testBytes: messages arrive byte for byte: JSON with escapes, UTF-8 of
// several widths, an empty message.
func testBytes(t *testing.T, h Harness) {
	ctx := Ctx(t)
	ch := channel("bytes")
	node := h.New(t)
	s := newSink(t)
	subscribe(t, ctx, node, ch, s.fn)
	msgs := []string{
		`{"notifier_id": "d6469fdc1ac4433aaf9eec737b4c5dba", "topics": ["orders"], "data": {"id": 7, "items": ["tea", "caf\u00e9"], "price": 2.5, "paid": true, "note": null}}`,
		`{"text":"café, 日本, 🎉, \"quoted\", back\\slash, tab\t"}`,
		`'single' $dollar$ ;--`,
		``,
	}
	pub := h.New(t)
	for _, m := range msgs {
		if err := pub.Publish(ctx, ch, []byte(m)); err != nil {
			t.Fatalf("Publish(%q): %v", m, err)
		}
	}
	got := s.waitFor(ctx, len(msgs), "every message")
	for i, m := range msgs {
		if string(got[i]) != m {
			t.Errorf("message %d arrived as %q, want %q", i, got[i], m)
		}
	}
}

// testSize: a message of MaxMessage bytes arrives; one byte more fails
// with ErrBrokerMessageTooLarge, and nothing arrives.
func testSize(t *testing.T, h Harness) {
	if h.MaxMessage == 0 {
		t.Skip("the broker has no size limit")
	}
	ctx := Ctx(t)
	ch := channel("size")
	node := h.New(t)
	s := newSink(t)
	subscribe(t, ctx, node, ch, s.fn)
	pub := h.New(t)
	big := bytes.Repeat([]byte("x"), h.MaxMessage+1)
	err := pub.Publish(ctx, ch, big)
	if !errors.Is(err, wsrpc.ErrBrokerMessageTooLarge) {
		t.Fatalf("Publish of %d bytes = %v, want ErrBrokerMessageTooLarge", len(big), err)
	}
	if err := pub.Publish(ctx, ch, big[:h.MaxMessage]); err != nil {
		t.Fatalf("Publish of %d bytes: %v", h.MaxMessage, err)
	}
	if err := pub.Publish(ctx, ch, []byte("end")); err != nil {
		t.Fatal(err)
	}
	got := s.waitFor(ctx, 2, "the largest message")
	if len(got[0]) != h.MaxMessage || string(got[1]) != "end" {
		t.Errorf("got messages of %d and %d bytes, want %d and the end marker (was the refused one sent?)", len(got[0]), len(got[1]), h.MaxMessage)
	}
}

// watcher records what a BrokerWatcher reports.
type watcher struct {
	mu      sync.Mutex
	reports []error
	changed chan struct{}
}

func watch(t testing.TB, b wsrpc.Broker) *watcher {
	t.Helper()
	bw, ok := b.(wsrpc.BrokerWatcher)
	if !ok {
		t.Fatalf("%T can lose its link but is no wsrpc.BrokerWatcher", b)
	}
	w := &watcher{changed: make(chan struct{}, 1)}
	stop := bw.Watch(func(err error) {
		w.mu.Lock()
		w.reports = append(w.reports, err)
		w.mu.Unlock()
		select {
		case w.changed <- struct{}{}:
		default:
		}
	})
	t.Cleanup(stop)
	return w
}

// waitReport waits for a report after the first n: a loss (down) or a
// recovery; it returns the count of reports so far.
func (w *watcher) waitReport(ctx context.Context, t testing.TB, n int, down bool) int {
	t.Helper()
	for {
		w.mu.Lock()
		for i := n; i < len(w.reports); i++ {
			if (w.reports[i] != nil) == down {
				if down && !errors.Is(w.reports[i], wsrpc.ErrBrokerUnavailable) {
					t.Errorf("Watch reported %v, want an error wrapping ErrBrokerUnavailable", w.reports[i])
				}
				w.mu.Unlock()
				return i + 1
			}
		}
		w.mu.Unlock()
		select {
		case <-w.changed:
		case <-ctx.Done():
			state := "recovered"
			if down {
				state = "lost"
			}
			t.Fatalf("Watch never reported the link %s: %v", state, ctx.Err())
		}
	}
}

// testOutage: the server goes away: the watcher says so, Publish fails
// with ErrBrokerUnavailable; it comes back: the watcher says so, and the
// subscriptions made before hear what is published after.
func testOutage(t *testing.T, h Harness) {
	if h.Stop == nil {
		t.Skip("the harness cannot stop the broker")
	}
	ctx := Ctx(t)
	ch := channel("outage")
	sub, pub := h.New(t), h.New(t)
	s := newSink(t)
	subscribe(t, ctx, sub, ch, s.fn)
	ws, wp := watch(t, sub), watch(t, pub)
	if err := pub.Publish(ctx, ch, []byte("before")); err != nil {
		t.Fatal(err)
	}
	s.waitFor(ctx, 1, "the message before the outage")

	h.Stop()
	restarted := false
	defer func() {
		if !restarted {
			h.Start()
		}
	}()
	ns := ws.waitReport(ctx, t, 0, true)
	// The publisher's link may learn of the loss only when it is used.
	var err error
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = pub.Publish(pctx, ch, []byte("lost"))
		cancel()
		if err != nil || ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond) // taken while the link was still thought up
	}
	if !errors.Is(err, wsrpc.ErrBrokerUnavailable) {
		t.Errorf("Publish with the broker down = %v, want ErrBrokerUnavailable", err)
	}
	np := wp.waitReport(ctx, t, 0, true)

	h.Start()
	restarted = true
	ws.waitReport(ctx, t, ns, false)
	wp.waitReport(ctx, t, np, false)
	if err := pub.Publish(ctx, ch, []byte("after")); err != nil {
		t.Fatalf("Publish once the broker is back: %v", err)
	}
	got := s.waitFor(ctx, 2, "the message after the outage")
	if string(got[len(got)-1]) != "after" {
		t.Errorf("last message %q, want after", got[len(got)-1])
	}
	for _, m := range got {
		if string(m) == "lost" {
			t.Log("a message published while the link was down arrived: allowed (at most once), not promised")
		}
	}
}
