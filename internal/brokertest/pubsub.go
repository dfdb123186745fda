package brokertest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/pubsub"
)

// Node is a pub/sub node for the suite: a pubsub.Server on its own
// wsrpc.Server, on a loopback httptest server, mounted where wsrpc serve
// mounts it.
type Node struct {
	PubSub *pubsub.Server
	Server *wsrpc.Server
	// URL is the ws:// URL of its /pubsub endpoint.
	URL string
	hs  *httptest.Server
}

// NewNode starts a node on broker b; it is closed when the test ends.
func NewNode(t testing.TB, b wsrpc.Broker, obs pubsub.Observer) *Node {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	n := &Node{PubSub: pubsub.NewServer(&pubsub.Options{Broker: b, Logger: quiet, Observer: obs})}
	mux := wsrpc.NewMux()
	var err error
	if n.Server, err = wsrpc.NewServer(mux, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{Logger: quiet}}); err != nil {
		t.Fatal(err)
	}
	n.PubSub.Register(n.Server, mux)
	hm := http.NewServeMux()
	for _, p := range []string{"/ws", "/ws/{client_id}", "/pubsub", "/pubsub/{client_id}"} {
		hm.Handle(p, n.Server)
	}
	n.hs = httptest.NewServer(hm)
	n.URL = "ws" + strings.TrimPrefix(n.hs.URL, "http") + "/pubsub"
	t.Cleanup(func() {
		n.Server.Close()
		n.hs.Close()
		n.PubSub.Close()
	})
	return n
}

// Dial connects a pub/sub client to url; it is closed when the test ends.
func Dial(t testing.TB, url string) *pubsub.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cl, err := pubsub.Dial(ctx, url, &pubsub.ClientOptions{DialOptions: wsrpc.DialOptions{ConnOptions: wsrpc.ConnOptions{Logger: quiet}}})
	if err != nil {
		t.Fatalf("Dial(%s): %v", url, err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// events collects what a subscriber's handler gets.
type events struct{ ch chan pubsub.Event }

func newEvents() *events { return &events{ch: make(chan pubsub.Event, 10000)} }

func (e *events) handle(_ context.Context, ev pubsub.Event) error {
	e.ch <- ev
	return nil
}

func (e *events) next(ctx context.Context, t testing.TB, what string) pubsub.Event {
	t.Helper()
	select {
	case ev := <-e.ch:
		return ev
	case <-ctx.Done():
		t.Fatalf("waiting for %s: %v", what, ctx.Err())
		panic("unreachable")
	}
}

// waitSubscribed waits until the node's broker subscription is up: an
// event published on the node's broker from elsewhere reaches a local
// subscriber. It uses (and drains) a topic of its own.
func waitSubscribed(ctx context.Context, t testing.TB, b wsrpc.Broker, nodes []*Node) {
	t.Helper()
	topic := "brokertest.ready." + time.Now().Format("150405.000000000")
	var subs []*events
	for _, n := range nodes {
		e := newEvents()
		stop := n.PubSub.Subscribe([]string{topic}, func(_ context.Context, ev pubsub.Event) error {
			e.ch <- ev
			return nil
		})
		defer stop()
		subs = append(subs, e)
	}
	msg := []byte(`{"notifier_id": "brokertest-ready", "topics": ["` + topic + `"], "data": "ready"}`)
	for i, e := range subs {
		for {
			if err := b.Publish(ctx, pubsub.BrokerChannel, msg); err != nil && !errors.Is(err, wsrpc.ErrBrokerUnavailable) {
				t.Fatal(err)
			}
			select {
			case <-e.ch:
			case <-time.After(100 * time.Millisecond):
				if ctx.Err() != nil {
					t.Fatalf("node %d never heard the broker: %v", i, ctx.Err())
				}
				continue
			}
			break
		}
	}
}

// testPubSubNodes: three nodes on their own Brokers of one server, two
// subscribers on each. Events published on every node, concurrently,
// reach every subscriber once, in order per publisher; an event in the
// Python broadcaster's format, published by another process, reaches them
// all once.
func testPubSubNodes(t *testing.T, h Harness) {
	ctx := Ctx(t)
	topic := channel("orders")
	var nodes []*Node
	for range 3 {
		nodes = append(nodes, NewNode(t, h.New(t), nil))
	}
	other := h.New(t)
	waitSubscribed(ctx, t, other, nodes)
	var subs []*events
	for _, n := range nodes {
		for range 2 {
			e := newEvents()
			if err := Dial(t, n.URL).Subscribe(ctx, topic, e.handle); err != nil {
				t.Fatal(err)
			}
			subs = append(subs, e)
		}
	}
	const k = 50
	var wg sync.WaitGroup
	for i, n := range nodes {
		pub := Dial(t, n.URL)
		wg.Go(func() {
			for seq := range k {
				if err := pub.Publish(ctx, []string{topic}, map[string]int{"node": i, "seq": seq}); err != nil {
					t.Errorf("node %d: Publish: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	for si, e := range subs {
		next := map[int]int{}
		for range 3 * k {
			var v struct{ Node, Seq int }
			if err := e.next(ctx, t, "an event").Decode(&v); err != nil {
				t.Fatal(err)
			}
			if v.Seq != next[v.Node] {
				t.Fatalf("subscriber %d: node %d's event %d came when %d was next (lost, repeated or reordered)", si, v.Node, v.Seq, next[v.Node])
			}
			next[v.Node]++
		}
	}
	py := `{"notifier_id": "1f0e2d3c4b5a69788796a5b4c3d2e1f0", "topics": ["` + topic + `"], "data": {"from": "python"}}`
	if err := other.Publish(ctx, pubsub.BrokerChannel, []byte(py)); err != nil {
		t.Fatal(err)
	}
	for si, e := range subs {
		if ev := e.next(ctx, t, "the foreign event"); string(ev.Data) != `{"from": "python"}` {
			t.Errorf("subscriber %d got %s, want the foreign event (an event twice?)", si, ev.Data)
		}
	}
	// Every event has been counted; one more would be a duplicate.
	end := `{"notifier_id": "1f0e2d3c4b5a69788796a5b4c3d2e1f0", "topics": ["` + topic + `"], "data": "end"}`
	if err := other.Publish(ctx, pubsub.BrokerChannel, []byte(end)); err != nil {
		t.Fatal(err)
	}
	for si, e := range subs {
		if ev := e.next(ctx, t, "the end marker"); string(ev.Data) != `"end"` {
			t.Errorf("subscriber %d got %s before the end marker: a duplicate", si, ev.Data)
		}
	}
}

// brokerEvents counts what a pubsub.Observer hears of the broker.
type brokerEvents struct {
	pubsub.NopObserver
	mu      sync.Mutex
	downs   int
	ups     int
	changed chan struct{}
}

func (o *brokerEvents) Broker(err error) {
	o.mu.Lock()
	if err != nil {
		o.downs++
	} else {
		o.ups++
	}
	o.mu.Unlock()
	select {
	case o.changed <- struct{}{}:
	default:
	}
}

func (o *brokerEvents) wait(ctx context.Context, t testing.TB, what string, ok func(downs, ups int) bool) {
	t.Helper()
	for {
		o.mu.Lock()
		done := ok(o.downs, o.ups)
		o.mu.Unlock()
		if done {
			return
		}
		select {
		case <-o.changed:
		case <-ctx.Done():
			t.Fatalf("waiting for the observer to hear %s: %v", what, ctx.Err())
		}
	}
}

// testPubSubOutage: the broker goes away. Each node goes on serving its
// own subscribers, tells a publisher that its event reached them only
// (pubsub.CodeBrokerUnavailable), and tells its Observer; the broker comes
// back: the nodes re-subscribe by themselves and carry each other's events
// again.
func testPubSubOutage(t *testing.T, h Harness) {
	if h.Stop == nil {
		t.Skip("the harness cannot stop the broker")
	}
	ctx := Ctx(t)
	topic := channel("outage")
	obs := []*brokerEvents{{changed: make(chan struct{}, 1)}, {changed: make(chan struct{}, 1)}}
	a, b := NewNode(t, h.New(t), obs[0]), NewNode(t, h.New(t), obs[1])
	other := h.New(t)
	waitSubscribed(ctx, t, other, []*Node{a, b})
	ea, eb := newEvents(), newEvents()
	if err := Dial(t, a.URL).Subscribe(ctx, topic, ea.handle); err != nil {
		t.Fatal(err)
	}
	if err := Dial(t, b.URL).Subscribe(ctx, topic, eb.handle); err != nil {
		t.Fatal(err)
	}
	pub := Dial(t, a.URL)

	h.Stop()
	restarted := false
	defer func() {
		if !restarted {
			h.Start()
		}
	}()
	obs[0].wait(ctx, t, "the link lost", func(downs, _ int) bool { return downs > 0 })
	var err error
	for {
		err = pub.Publish(ctx, []string{topic}, "local")
		if ev := ea.next(ctx, t, "the local event"); string(ev.Data) != `"local"` {
			t.Fatalf("node a's subscriber got %s", ev.Data)
		}
		if err != nil || ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if e, ok := errors.AsType[*wsrpc.Error](err); !ok || e.Code != pubsub.CodeBrokerUnavailable {
		t.Errorf("Publish with the broker down = %v, want code %d", err, pubsub.CodeBrokerUnavailable)
	}
	obs[1].wait(ctx, t, "the link lost", func(downs, _ int) bool { return downs > 0 })

	h.Start()
	restarted = true
	waitSubscribed(ctx, t, other, []*Node{a, b})
	if err := pub.Publish(ctx, []string{topic}, "after"); err != nil {
		t.Fatalf("Publish once the broker is back: %v", err)
	}
	if ev := ea.next(ctx, t, "the event after"); string(ev.Data) != `"after"` {
		t.Errorf("node a's subscriber got %s", ev.Data)
	}
	for {
		// Node b may have heard some "local" events, published before
		// node a knew its link was down.
		ev := eb.next(ctx, t, "the event after, across nodes")
		if string(ev.Data) == `"after"` {
			break
		}
		if string(ev.Data) != `"local"` {
			t.Fatalf("node b's subscriber got %s", ev.Data)
		}
	}
	for _, o := range obs {
		o.wait(ctx, t, "the link back", func(_, ups int) bool { return ups > 0 })
	}
}
