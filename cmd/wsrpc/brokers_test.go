//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/internal/services"
	"github.com/wsrpc/wsrpc/pubsub"
)

// TestServeBrokers: two wsrpc serve nodes on each broker that --broker
// takes (a real server of each, started by the test). An event published
// on one node reaches a subscriber of the other, and a call routed from
// one node reaches a client of the other.
func TestServeBrokers(t *testing.T) {
	t.Parallel()
	for name, url := range map[string]func(t *testing.T) string{
		"redis":    func(t *testing.T) string { return "redis://" + services.Redis(t).Addr },
		"nats":     func(t *testing.T) string { return "nats://" + services.NATS(t).Addr },
		"postgres": func(t *testing.T) string { return services.PostgresURL(services.Postgres(t)) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			broker := url(t)
			a := startServeArgs(t, []string{"--broker", broker, "--node-id", "a"}, nil)
			b := startServeArgs(t, []string{"--broker", broker, "--node-id", "b"}, nil)

			methods := wsrpc.NewMux()
			wsrpc.Register(methods, "whoami", func(context.Context, struct{}) (string, error) { return "alice on a", nil })
			alice, err := pubsub.Dial(ctx, a.url+"/alice", &pubsub.ClientOptions{DialOptions: wsrpc.DialOptions{
				Methods: methods, ConnOptions: wsrpc.ConnOptions{Logger: slog.New(slog.DiscardHandler)},
			}})
			if err != nil {
				t.Fatal(err)
			}
			defer alice.Close()
			events := make(chan string, 100)
			if err := alice.Subscribe(ctx, "news", func(_ context.Context, ev pubsub.Event) error {
				events <- string(ev.Data)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			caller := dialQuiet(t, b.url, nil)
			// Node b knows node a a beat after both joined.
			if err := eventually(func() error {
				got, err := wsrpc.Call[string](ctx, caller, "call_client", map[string]string{"client_id": "alice", "method": "whoami"})
				if err == nil && got != "alice on a" {
					return fmt.Errorf("got %q", got)
				}
				return err
			}); err != nil {
				t.Fatalf("call routed from b to alice on a: %v", err)
			}
			// Node a subscribes its pub/sub server to the broker in the
			// background (cluster.Join subscribes before it returns): the
			// routed call above does not show that it has. Publish until
			// an event comes.
			if err := eventually(func() error {
				if _, err := wsrpc.Call[any](ctx, caller, "publish", map[string]any{"topics": []string{"news"}, "data": "from b"}); err != nil {
					return err
				}
				select {
				case ev := <-events:
					if ev != `"from b"` {
						t.Errorf("alice got %s, want b's event", ev)
					}
					return nil
				case <-time.After(200 * time.Millisecond):
					return errors.New("no event yet")
				}
			}); err != nil {
				t.Fatalf("b's event never reached alice on a: %v", err)
			}
		})
	}
}

// TestServeOTLPPubSubNodes: two wsrpc serve nodes with --otlp on a real
// Redis. An event published through node a reaches a subscriber of node
// b: b's notify span is linked to a's publish span, through the broker
// message's "wsrpc" member, and b's /metrics (--metrics) has observed the
// broker's lag, from the time a stamped on it.
func TestServeOTLPPubSubNodes(t *testing.T) {
	t.Parallel()
	col := &collector{spans: map[string][]map[string]string{}}
	hs := httptest.NewServer(col)
	defer hs.Close()
	broker := "redis://" + services.Redis(t).Addr
	a := startServeArgs(t, []string{"--otlp", hs.URL, "--broker", broker, "--node-id", "a"}, nil)
	b := startServeArgs(t, []string{"--otlp", hs.URL, "--broker", broker, "--node-id", "b", "--metrics", "127.0.0.1:0"}, nil)
	waitFor(t, "node b to be subscribed to Redis", func() bool {
		up, _ := seriesValue(scrape(t, b), "wsrpc_pubsub_broker_up")
		return up == "1"
	})
	deliverAcross(t, b.url, a.url)
	// Every event from a counts, its "time" events too: at least this one.
	if n, _ := seriesValue(scrape(t, b), "wsrpc_pubsub_broker_lag_seconds_count"); n == "" || n == "0" {
		t.Errorf("node b: wsrpc_pubsub_broker_lag_seconds_count = %q, want at least 1", n)
	}
	http.DefaultClient.CloseIdleConnections()
	for name, s := range map[string]*serveRun{"a": a, "b": b} {
		if c := s.stop(); c != exitOK {
			t.Fatalf("node %s exited with %d: %s", name, c, s.stderr.String())
		}
	}
	checkNotifyLinked(t, col)
}
