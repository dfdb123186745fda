package pgbroker_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/internal/brokertest"
	"github.com/wsrpc/wsrpc/pgbroker"
	"github.com/wsrpc/wsrpc/pubsub"
)

// maxEventData is the largest event data (JSON) that crosses nodes on
// topic, as the README states it: MaxMessage less the broadcaster's
// envelope, {"notifier_id": "<32 hex digits>", "topics": ["<topic>"],
// "data": <data>}, for a topic that JSON quotes without escapes.
func maxEventData(topic string) int { return pgbroker.MaxMessage - 77 - len(topic) }

// testPubSubLimit: between two pub/sub nodes on PostgreSQL, an event
// whose data is exactly the largest that fits crosses; one byte more is
// refused by Publish with ErrBrokerMessageTooLarge, and reaches the
// publishing node's subscribers only.
func testPubSubLimit(t *testing.T, url string) {
	ctx := brokertest.Ctx(t)
	a := brokertest.NewNode(t, newBroker(t, url, nil), nil)
	b := brokertest.NewNode(t, newBroker(t, url, nil), nil)
	const topic = "limit"
	got := [2]chan pubsub.Event{make(chan pubsub.Event, 100), make(chan pubsub.Event, 100)}
	for i, n := range []*brokertest.Node{a, b} {
		t.Cleanup(n.PubSub.Subscribe([]string{topic}, func(_ context.Context, ev pubsub.Event) error {
			got[i] <- ev
			return nil
		}))
	}
	next := func(i int) pubsub.Event {
		t.Helper()
		select {
		case ev := <-got[i]:
			return ev
		case <-ctx.Done():
			t.Fatalf("node %d: no event: %v", i, ctx.Err())
			panic("unreachable")
		}
	}
	// Node b subscribes to the broker in the background: wait for it.
	for ready := false; !ready; {
		if err := a.PubSub.Publish(ctx, []string{topic}, "ready"); err != nil {
			t.Fatal(err)
		}
		next(0)
		select {
		case <-got[1]:
			ready = true
		case <-time.After(50 * time.Millisecond):
		}
	}
	for len(got[1]) > 0 {
		<-got[1]
	}

	data := func(n int) json.RawMessage { return json.RawMessage(`"` + strings.Repeat("x", n-2) + `"`) }
	limit := maxEventData(topic)
	if err := a.PubSub.Publish(ctx, []string{topic}, data(limit)); err != nil {
		t.Fatalf("Publish of %d bytes of data: %v", limit, err)
	}
	for i := range 2 {
		if ev := next(i); len(ev.Data) != limit {
			t.Errorf("node %d got %d bytes of data, want %d", i, len(ev.Data), limit)
		}
	}
	err := a.PubSub.Publish(ctx, []string{topic}, data(limit+1))
	if !errors.Is(err, wsrpc.ErrBrokerMessageTooLarge) {
		t.Errorf("Publish of %d bytes of data = %v, want ErrBrokerMessageTooLarge", limit+1, err)
	}
	if ev := next(0); len(ev.Data) != limit+1 {
		t.Errorf("node a's subscriber got %d bytes, want the %d published there", len(ev.Data), limit+1)
	}
	if err := a.PubSub.Publish(ctx, []string{topic}, "end"); err != nil {
		t.Fatal(err)
	}
	next(0)
	if ev := next(1); string(ev.Data) != `"end"` {
		t.Errorf("node b got %d bytes of data before the end marker: the refused event", len(ev.Data))
	}
}
