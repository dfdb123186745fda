package otelwsrpc_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/cluster"
	"github.com/wsrpc/wsrpc/otelwsrpc"
	"github.com/wsrpc/wsrpc/pubsub"
)

// clusterNode is a traced wsrpc server on /ws/{client_id}, a node of the
// cluster on b whose routed calls carry trace context (Propagator).
func clusterNode(t *testing.T, b wsrpc.Broker, id string, mux *wsrpc.Mux, obs wsrpc.Observer) (*cluster.Node, string) {
	t.Helper()
	srv, err := wsrpc.NewServer(mux, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{Observer: obs}})
	if err != nil {
		t.Fatal(err)
	}
	hm := http.NewServeMux()
	hm.Handle("/ws/{client_id}", srv)
	hs := httptest.NewServer(hm)
	node, err := cluster.Join(t.Context(), srv, b, &cluster.Options{
		ID: id, Heartbeat: 100 * time.Millisecond, Trace: otelwsrpc.Propagator{},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		node.Close()
		srv.Close()
		hs.Close()
	})
	return node, "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws/"
}

// TestRoutedTrace: a call routed across two nodes is one trace. A client
// calls relay on node b; relay's handler calls client alice, connected to
// node a, through the cluster; the call node a makes to alice, and alice's
// handling of it, are children of relay's span on node b.
func TestRoutedTrace(t *testing.T) {
	ctx := t.Context()
	tel := newSide(t, nil) // one tracer for the whole cluster: one recorder
	broker := pubsub.NewMemoryBroker()
	var nodeB *cluster.Node
	relay := wsrpc.NewMux()
	wsrpc.Register(relay, "relay", func(ctx context.Context, a textArgs) (string, error) {
		return cluster.Call[string](ctx, nodeB, "alice", "echo", a)
	})
	_, urlA := clusterNode(t, broker, "a", wsrpc.NewMux(), tel.obs)
	var urlB string
	nodeB, urlB = clusterNode(t, broker, "b", relay, tel.obs)

	alice := wsrpc.NewMux()
	wsrpc.Register(alice, "echo", func(_ context.Context, a textArgs) (string, error) { return a.Text, nil })
	dial(t, urlA+"alice", &wsrpc.DialOptions{Methods: alice, ConnOptions: wsrpc.ConnOptions{Observer: tel.obs}})
	caller := dial(t, urlB+"caller", &wsrpc.DialOptions{ConnOptions: wsrpc.ConnOptions{Observer: tel.obs}})
	// Node b routes to alice once it knows node a and a has indexed her.
	for {
		got, err := cluster.Call[string](ctx, nodeB, "alice", "echo", textArgs{"ready"})
		if err == nil && got == "ready" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("node b never reached alice: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	// The ready call's spans end too (alice's handling may end after the
	// answer came) before the recorder forgets them.
	tel.ended(t, "echo", trace.SpanKindServer)
	tel.spans.Reset()

	got, err := wsrpc.Call[string](ctx, caller, "relay", textArgs{"across"})
	if err != nil || got != "across" {
		t.Fatalf("relay = %q, %v", got, err)
	}
	callRelay := tel.span(t, "relay", trace.SpanKindClient)
	// A server span ends once its answer is queued: it may end after the
	// caller got the answer.
	serveRelay := tel.ended(t, "relay", trace.SpanKindServer)
	callAlice := tel.span(t, "echo", trace.SpanKindClient)   // node a's call to alice
	serveAlice := tel.ended(t, "echo", trace.SpanKindServer) // alice's handling
	chain := []struct {
		what         string
		span, parent interface {
			SpanContext() trace.SpanContext
			Parent() trace.SpanContext
		}
	}{
		{"node b's handling of relay", serveRelay, callRelay},
		{"node a's call to alice, across the cluster", callAlice, serveRelay},
		{"alice's handling", serveAlice, callAlice},
	}
	for _, c := range chain {
		if c.span.SpanContext().TraceID() != callRelay.SpanContext().TraceID() {
			t.Errorf("%s is in trace %s, want %s", c.what, c.span.SpanContext().TraceID(), callRelay.SpanContext().TraceID())
		}
		if c.span.Parent().SpanID() != c.parent.SpanContext().SpanID() {
			t.Errorf("%s: parent %s, want %s", c.what, c.span.Parent().SpanID(), c.parent.SpanContext().SpanID())
		}
	}
}
