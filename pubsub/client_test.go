package pubsub

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsrpc/wsrpc"
)

// TestResubscribeRefusedTopic: on a new connection the Client subscribes
// again to its topics; if the server now refuses one of them, the others
// are still subscribed on that connection (the refused one only is left
// out), and the refused topic is tried again on the next connection.
func TestResubscribeRefusedTopic(t *testing.T) {
	ctx := ctxT(t)
	var refuse atomic.Bool
	n := newNode(t, &Options{Authorize: func(_ context.Context, _ *wsrpc.Conn, a Action, topic string) error {
		if a == ActionSubscribe && topic == "b" && refuse.Load() {
			return errors.New("not any more")
		}
		return nil
	}}, nil)
	cl := dial(t, n.url, nil)
	ca, cb := newCollector(), newCollector()
	if err := cl.Subscribe(ctx, "a", ca.handle); err != nil {
		t.Fatal(err)
	}
	if err := cl.Subscribe(ctx, "b", cb.handle); err != nil {
		t.Fatal(err)
	}

	refuse.Store(true)
	n.dropConn(t)
	n.subscribed(t, "a", 1) // back, with a
	if err := n.ps.Publish(ctx, []string{"b"}, "b1"); err != nil {
		t.Fatal(err)
	}
	if err := n.ps.Publish(ctx, []string{"a"}, "a1"); err != nil {
		t.Fatal(err)
	}
	if ev := recv(ctx, t, ca.ch, "a's event"); string(ev.Data) != `"a1"` {
		t.Fatalf("a got %s, want \"a1\"", ev.Data)
	}
	if got := n.ps.Topics()["b"]; got != 0 {
		t.Fatalf("the server holds %d subscriptions to the refused topic", got)
	}
	select {
	case ev := <-cb.ch:
		t.Fatalf("the refused topic got %s", ev.Data)
	default:
	}

	refuse.Store(false)
	n.dropConn(t)
	n.subscribed(t, "b", 1) // tried again on the next connection
	n.subscribed(t, "a", 1)
	if err := n.ps.Publish(ctx, []string{"b"}, "b2"); err != nil {
		t.Fatal(err)
	}
	if ev := recv(ctx, t, cb.ch, "b's event"); string(ev.Data) != `"b2"` {
		t.Fatalf("b got %s, want \"b2\" (b1 was published while it was refused)", ev.Data)
	}
}

// TestHandlerQueueHoldsAnswers: while a subscription's handler is busy and
// its HandlerQueue is full, the Client holds back its answer to the next
// notify, so that events queue on the server, under its policy, not in
// the client: here the server's CallTimeout fails each held notify and
// the server counts it dropped, having had answers for the three events
// the client took; the handler, once free, gets those in order.
func TestHandlerQueueHoldsAnswers(t *testing.T) {
	ctx := ctxT(t)
	n := newNode(t, nil, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{CallTimeout: 300 * time.Millisecond}})
	cl := dial(t, n.url, &ClientOptions{HandlerQueue: 2})
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free) // before the Client closes, which waits for the handler
	got := make(chan int, 10)
	err := cl.Subscribe(ctx, "t", func(ctx context.Context, ev Event) error {
		var i int
		if err := json.Unmarshal(ev.Data, &i); err != nil {
			return err
		}
		got <- i
		if i == 0 {
			<-release
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	const events = 5 // 0 in the handler, 1 and 2 queued, 3 and 4 held back
	for i := range events {
		if err := n.ps.Publish(ctx, []string{"t"}, i); err != nil {
			t.Fatal(err)
		}
	}
	if i := recv(ctx, t, got, "the first event"); i != 0 {
		t.Fatalf("the handler got %d first", i)
	}
	// Bounded by the server's CallTimeout for each held notify.
	pollUntil(t, "the two held notifies to fail", func() bool { return n.ps.Stats().Dropped == events-3 })
	if st := n.ps.Stats(); st.Delivered != 3 || st.Queued != 0 {
		t.Fatalf("Stats: %d delivered, %d queued; want 3 answered (the events the client took) and none queued", st.Delivered, st.Queued)
	}
	free()
	// The handler gets 1 and 2, then the event published next. A held
	// notify the server gave up on may still come between, if its cancel
	// reaches the client after the queue has room (the server's timeout
	// cannot unsay a request already sent): once at most, in order.
	if err := n.ps.Publish(ctx, []string{"t"}, 99); err != nil {
		t.Fatal(err)
	}
	var seen []int
	for len(seen) == 0 || seen[len(seen)-1] != 99 {
		seen = append(seen, recv(ctx, t, got, "the queued events and the one after"))
	}
	if len(seen) < 3 || !slices.Equal(seen[:2], []int{1, 2}) || !slices.IsSorted(seen) {
		t.Fatalf("after the first, the handler got %v, want 1, 2, at most 3 and 4 once each, then 99", seen)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] == seen[i-1] {
			t.Fatalf("the handler got %v: an event twice", seen)
		}
	}
}

// TestClientHandlerFailures: a Subscribe with a nil handler, or to a topic
// already subscribed, fails and changes nothing; a handler that panics or
// fails on one event gets the next ones all the same, on a connection
// that lives on.
func TestClientHandlerFailures(t *testing.T) {
	ctx := ctxT(t)
	n := newNode(t, nil, nil)
	cl := dial(t, n.url, nil)
	if err := cl.Subscribe(ctx, "t", nil); err == nil {
		t.Fatal("Subscribe with a nil handler succeeded")
	}
	if got := cl.Topics(); len(got) != 0 {
		t.Fatalf("Topics() = %v after a refused Subscribe", got)
	}
	got := make(chan string, 10)
	err := cl.Subscribe(ctx, "t", func(_ context.Context, ev Event) error {
		got <- string(ev.Data)
		switch string(ev.Data) {
		case `"panic"`:
			panic("handler bug")
		case `"fail"`:
			return errors.New("handler failure")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Subscribe(ctx, "t", newCollector().handle); err == nil || !strings.Contains(err.Error(), `already subscribed to "t"`) {
		t.Fatalf("a second Subscribe to t: %v, want an already subscribed error", err)
	}
	first := cl.RPC().Conn()
	for _, d := range []string{"panic", "fail", "ok"} {
		if err := n.ps.Publish(ctx, []string{"t"}, d); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{`"panic"`, `"fail"`, `"ok"`} {
		if d := recv(ctx, t, got, "the events"); d != want {
			t.Fatalf("the handler got %s, want %s", d, want)
		}
	}
	if c := cl.RPC().Conn(); c != first {
		t.Fatal("the client reconnected after its handler panicked")
	}
}

// TestClientArgumentsAndClose: Dial refuses a negative HandlerQueue and
// Methods that already have notify, and reports a server it cannot reach;
// Publish refuses data that is not JSON before sending anything; once
// closed, every method returns ErrClosed.
func TestClientArgumentsAndClose(t *testing.T) {
	ctx := ctxT(t)
	n := newNode(t, nil, nil)
	// mustNotDial checks that Dial refuses opts with an error containing
	// want, closing a Client it should not have made.
	mustNotDial := func(url string, dctx context.Context, opts *ClientOptions, want string) {
		t.Helper()
		cl, err := Dial(dctx, url, opts)
		if err == nil {
			cl.Close()
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Dial(%s, %+v): %v, want an error containing %q", url, opts, err, want)
		}
	}
	mustNotDial(n.url, ctx, &ClientOptions{HandlerQueue: -1}, "HandlerQueue")
	mux := wsrpc.NewMux()
	mux.HandleFunc("notify", func(context.Context, json.RawMessage) (any, error) { return nil, nil })
	mustNotDial(n.url, ctx, &ClientOptions{DialOptions: wsrpc.DialOptions{Methods: mux}}, "notify")
	gone := newNode(t, nil, nil)
	gone.close()
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	mustNotDial(gone.url, short, &ClientOptions{DialOptions: wsrpc.DialOptions{ConnOptions: wsrpc.ConnOptions{Logger: quiet()}}}, "dial")

	// A listener of its own: a client does not hear its own publications.
	c := newCollector()
	if err := dial(t, n.url, nil).Subscribe(ctx, "t", c.handle); err != nil {
		t.Fatal(err)
	}
	cl := dial(t, n.url, nil)
	if err := cl.Publish(ctx, []string{"t"}, make(chan int)); err == nil || !strings.Contains(err.Error(), "encode data") {
		t.Errorf("Publish of a channel: %v, want an encoding error", err)
	}
	if err := cl.Publish(ctx, []string{"t"}, json.RawMessage(`{"broken"`)); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Errorf("Publish of invalid raw JSON: %v, want an error", err)
	}
	if err := n.ps.Publish(ctx, []string{"t"}, "after"); err != nil {
		t.Fatal(err)
	}
	if ev := recv(ctx, t, c.ch, "the event after the refused publishes"); string(ev.Data) != `"after"` {
		t.Fatalf("the first event is %s: a refused publish went out", ev.Data)
	}
	pollUntil(t, "the publish to be counted", func() bool { return n.ps.Stats().Published >= 1 }) // just after its delivery
	if st := n.ps.Stats(); st.Published != 1 {
		t.Errorf("Stats.Published = %d, want 1: a refused publish reached the server", st.Published)
	}

	if err := cl.Close(); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"Subscribe":   cl.Subscribe(ctx, "u", newCollector().handle),
		"Unsubscribe": cl.Unsubscribe(ctx, "t"),
		"Publish":     cl.Publish(ctx, []string{"t"}, 1),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}
