package promwsrpc_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/promwsrpc"
	"github.com/wsrpc/wsrpc/pubsub"
)

// TestPubSubMetrics: a Metrics set as a pub/sub server's Observer counts
// the events published, queued and delivered over real connections, and
// the drops and the disconnect of a subscriber that never answers.
func TestPubSubMetrics(t *testing.T) {
	ctx := t.Context()
	m := promwsrpc.New(&promwsrpc.Options{TopicLabels: 1})
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	ps := pubsub.NewServer(&pubsub.Options{Observer: m, Logger: quiet, QueueEvents: 8})
	defer ps.Close()
	mux := wsrpc.NewMux()
	srv, err := wsrpc.NewServer(mux, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{Logger: quiet, KeepAlive: noKeepAlive}})
	if err != nil {
		t.Fatal(err)
	}
	ps.Register(srv, mux)
	hs := testServer(t, srv, reg)

	got := make(chan pubsub.Event, 100)
	for range 2 {
		c, err := pubsub.Dial(ctx, wsURL(hs), &pubsub.ClientOptions{DialOptions: wsrpc.DialOptions{ConnOptions: wsrpc.ConnOptions{Logger: quiet}}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Subscribe(ctx, "orders", func(_ context.Context, ev pubsub.Event) error { got <- ev; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if err := ps.Publish(ctx, []string{"orders"}, i); err != nil {
			t.Fatal(err)
		}
	}
	if err := ps.Publish(ctx, []string{"other-topic"}, "nobody listens"); err != nil {
		t.Fatal(err)
	}
	for range 6 {
		recv(t, got, "an event")
	}
	// The handlers got the events; the server counts each once it reads
	// the answer.
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) { // against a hang
		if gather(t, reg)[`wsrpc_pubsub_delivered_total{outcome="ok",topic="orders"}`] >= 6 {
			break
		}
	}
	expect(t, "pubsub", gather(t, reg), map[string]float64{
		`wsrpc_pubsub_published_total{topic="orders"}`:              3,
		`wsrpc_pubsub_published_total{topic="other"}`:               1, // over TopicLabels: 1
		`wsrpc_pubsub_queued_total{topic="orders"}`:                 6,
		`wsrpc_pubsub_delivered_total{outcome="ok",topic="orders"}`: 6,
		`wsrpc_pubsub_slow_disconnects_total`:                       0,
		`wsrpc_pubsub_broker_errors_total`:                          0,
	})

	// A subscriber that reads its notifies and never answers them: its
	// queue (8 events) fills, and the default policy closes it.
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, wsURL(hs), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"request": {"method": "subscribe", "arguments": {"topics": ["slow"]}, "call_id": "s1"}}`)); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := ws.ReadMessage(); err != nil || !strings.Contains(string(msg), `"s1"`) {
		t.Fatalf("subscribe answer: %s, %v", msg, err)
	}
	for i := range 20 {
		if err := ps.Publish(ctx, []string{"slow"}, i); err != nil {
			t.Fatal(err)
		}
	}
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			if !websocket.IsCloseError(err, int(pubsub.CloseSlowSubscriber)) {
				t.Fatalf("the slow subscriber's connection ended with %v, want close %d", err, pubsub.CloseSlowSubscriber)
			}
			break
		}
	}
	after := gather(t, reg)
	expect(t, "pubsub", after, map[string]float64{`wsrpc_pubsub_slow_disconnects_total`: 1})
	if n := after[`wsrpc_pubsub_dropped_total{reason="slow_subscriber",topic="other"}`]; n < 1 {
		t.Errorf("dropped{slow_subscriber} = %v, want at least 1", n)
	}
}

// TestPubSubBrokerLag: of two pub/sub servers on one broker, each with a
// Metrics, the one that receives an event the other published records
// its lag in wsrpc_pubsub_broker_lag_seconds (by topic when topics are
// labels); the publisher records none of its own.
func TestPubSubBrokerLag(t *testing.T) {
	for _, topics := range []int{0, 10} {
		ctx := t.Context()
		broker := pubsub.NewMemoryBroker()
		pm, rm := promwsrpc.New(&promwsrpc.Options{TopicLabels: topics}), promwsrpc.New(&promwsrpc.Options{TopicLabels: topics})
		preg, rreg := prometheus.NewRegistry(), prometheus.NewRegistry()
		preg.MustRegister(pm)
		rreg.MustRegister(rm)
		publisher := pubsub.NewServer(&pubsub.Options{Broker: broker, Observer: pm, Logger: quiet})
		defer publisher.Close()
		receiver := pubsub.NewServer(&pubsub.Options{Broker: broker, Observer: rm, Logger: quiet})
		defer receiver.Close()
		if err := publisher.Publish(ctx, []string{"orders"}, 1); err != nil {
			t.Fatal(err)
		}
		series := "wsrpc_pubsub_broker_lag_seconds_count"
		if topics != 0 {
			series += `{topic="orders"}`
		}
		// A MemoryBroker delivers before Publish returns.
		got := gather(t, rreg)
		expect(t, "receiver", got, map[string]float64{series: 1})
		if sum := got[strings.Replace(series, "_count", "_sum", 1)]; sum < 0 {
			t.Errorf("receiver: lag sum %v, want at least 0", sum)
		}
		if n := gather(t, preg)[series]; n != 0 {
			t.Errorf("publisher: %s = %v, want 0", series, n)
		}
	}
}
