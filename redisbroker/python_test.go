package redisbroker_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/wsrpc/wsrpc/internal/brokertest"
	"github.com/wsrpc/wsrpc/internal/services"
	"github.com/wsrpc/wsrpc/pubsub"
)

// TestPythonNode: a Go pub/sub node and a Python-format node (a raw Redis
// client, publishing and reading on EventNotifier as permit-broadcaster
// does) on one Redis, both ways. What the Go node's clients publish
// reaches the Python side one message per topic, in order, with the Go
// node's notifier id; what the Python side publishes (pydantic 1's
// spacing and escapes) reaches the Go node's subscribers in order, once.
func TestPythonNode(t *testing.T) {
	ctx := brokertest.Ctx(t)
	srv := services.Redis(t)
	rc := rawClient(t, srv)
	py := tap(t, ctx, rc)
	n := node(ctx, t, dial(t, srv, nil))
	events := make(collector, 200)
	if err := brokertest.Dial(t, n.URL).Subscribe(ctx, "orders", events.handle); err != nil {
		t.Fatal(err)
	}
	const k = 50

	// Go to Python.
	pub := brokertest.Dial(t, n.URL)
	for i := range k {
		if err := pub.Publish(ctx, []string{"orders", "users"}, map[string]any{"seq": i, "text": "café"}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range k {
		for _, topic := range []string{"orders", "users"} {
			m := recv(ctx, t, py)
			var e struct {
				NotifierID string   `json:"notifier_id"`
				Topics     []string `json:"topics"`
				Data       struct {
					Seq  int
					Text string
				} `json:"data"`
			}
			if err := json.Unmarshal([]byte(m.Payload), &e); err != nil {
				t.Fatalf("Python side: %q: %v", m.Payload, err)
			}
			if e.NotifierID != n.PubSub.NodeID() || len(e.Topics) != 1 || e.Topics[0] != topic || e.Data.Seq != i || e.Data.Text != "café" {
				t.Fatalf("Python side got %s, want event %d on %s from node %s", m.Payload, i, topic, n.PubSub.NodeID())
			}
		}
	}

	// Python to Go.
	const pyID = "1f0e2d3c4b5a69788796a5b4c3d2e1f0"
	for i := range k {
		msg := fmt.Sprintf(`{"notifier_id": "%s", "topics": ["orders"], "data": {"seq": %d, "text": "caf\u00e9"}}`, pyID, i)
		if err := rc.Publish(ctx, pubsub.BrokerChannel, msg).Err(); err != nil {
			t.Fatal(err)
		}
	}
	end := `{"notifier_id": "` + pyID + `", "topics": ["orders"], "data": "end"}`
	if err := rc.Publish(ctx, pubsub.BrokerChannel, end).Err(); err != nil {
		t.Fatal(err)
	}
	got := events.until(ctx, t, `"end"`)
	if len(got) != 2*k {
		t.Fatalf("the Go subscriber got %d events, want %d (its node's, then the Python side's)", len(got), 2*k)
	}
	for i, d := range got {
		var v struct {
			Seq  int
			Text string
		}
		if err := json.Unmarshal([]byte(d), &v); err != nil || v.Seq != i%k || v.Text != "café" {
			t.Errorf("event %d: %s, want seq %d (%v)", i, d, i%k, err)
		}
	}
}
