package otelwsrpc_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/otelwsrpc"
	"github.com/wsrpc/wsrpc/pubsub"
)

// pubsubNode is a pub/sub server whose events carry trace context
// (Propagator), on a traced wsrpc server over 127.0.0.1, on broker b; it
// returns the pub/sub server and its ws:// URL.
func pubsubNode(t *testing.T, b wsrpc.Broker, obs wsrpc.Observer) (*pubsub.Server, string) {
	t.Helper()
	ps := pubsub.NewServer(&pubsub.Options{Broker: b, Trace: otelwsrpc.Propagator{}})
	mux := wsrpc.NewMux()
	srv, err := wsrpc.NewServer(mux, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{Observer: obs}})
	if err != nil {
		t.Fatal(err)
	}
	ps.Register(srv, mux)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.Close()
		ps.Close()
		hs.Close()
	})
	return ps, "ws" + strings.TrimPrefix(hs.URL, "http")
}

// pubsubClient dials a traced pub/sub client, closed when the test ends.
func pubsubClient(t *testing.T, url string, obs wsrpc.Observer) *pubsub.Client {
	t.Helper()
	cl, err := pubsub.Dial(t.Context(), url, &pubsub.ClientOptions{DialOptions: wsrpc.DialOptions{ConnOptions: wsrpc.ConnOptions{Observer: obs}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// checkNotifyTrace checks the spans of one event's delivery: the
// server's notify is a messaging send span for topic orders, in a trace of
// its own, linked to publish; the subscriber's handling of the notify is
// its child.
func checkNotifyTrace(t *testing.T, tel *side, publish sdktrace.ReadOnlySpan) {
	t.Helper()
	notify := tel.ended(t, "notify", trace.SpanKindClient)
	handling := tel.ended(t, "notify", trace.SpanKindServer)
	links := notify.Links()
	if len(links) != 1 || links[0].SpanContext.SpanID() != publish.SpanContext().SpanID() || links[0].SpanContext.TraceID() != publish.SpanContext().TraceID() {
		t.Errorf("notify's links %v, want one to the publish span %v", links, publish.SpanContext())
	}
	if notify.SpanContext().TraceID() == publish.SpanContext().TraceID() || notify.Parent().IsValid() {
		t.Errorf("notify is in the publish's trace (parent %v), want the root of a trace of its own", notify.Parent())
	}
	for key, want := range map[attribute.Key]string{
		semconv.MessagingSystemKey:          "wsrpc",
		semconv.MessagingOperationTypeKey:   "send",
		semconv.MessagingOperationNameKey:   "notify",
		semconv.MessagingDestinationNameKey: "orders",
		semconv.RPCMethodKey:                "notify",
	} {
		if v, _ := attr(notify, key); v.AsString() != want {
			t.Errorf("notify span: %s = %q, want %q", key, v.AsString(), want)
		}
	}
	if handling.Parent().SpanID() != notify.SpanContext().SpanID() || handling.SpanContext().TraceID() != notify.SpanContext().TraceID() {
		t.Errorf("the subscriber's handling: parent %v, want the notify span %v", handling.Parent(), notify.SpanContext())
	}
}

// TestNotifyTrace: with pubsub.Options.Trace, each notify that delivers an
// event is a messaging span linked to the span that published it, and the
// subscriber's handling is its child: for a Go client's publish call on
// the subscriber's node, for one on another node sharing the broker, and
// for application code's Server.Publish with a span in its ctx.
func TestNotifyTrace(t *testing.T) {
	subscribe := func(t *testing.T, url string, obs wsrpc.Observer) <-chan pubsub.Event {
		got := make(chan pubsub.Event, 1)
		sub := pubsubClient(t, url, obs)
		if err := sub.Subscribe(t.Context(), "orders", func(_ context.Context, ev pubsub.Event) error { got <- ev; return nil }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	wait := func(t *testing.T, got <-chan pubsub.Event) {
		select {
		case ev := <-got:
			if string(ev.Data) != "7" {
				t.Fatalf("event %s, want 7", ev.Data)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no event")
		}
	}

	// A Go client's publish call on the subscriber's node, and on another
	// node sharing its broker; one tracer for all: one recorder.
	for name, nodes := range map[string]int{"one node": 1, "two nodes": 2} {
		t.Run(name, func(t *testing.T) {
			tel := newSide(t, nil)
			broker := pubsub.NewMemoryBroker()
			_, pubURL := pubsubNode(t, broker, tel.obs)
			subURL := pubURL
			if nodes == 2 {
				_, subURL = pubsubNode(t, broker, tel.obs)
			}
			got := subscribe(t, subURL, tel.obs)
			if err := pubsubClient(t, pubURL, tel.obs).Publish(t.Context(), []string{"orders"}, 7); err != nil {
				t.Fatal(err)
			}
			wait(t, got)
			checkNotifyTrace(t, tel, tel.ended(t, "publish", trace.SpanKindServer))
		})
	}

	t.Run("Server.Publish", func(t *testing.T) {
		tel := newSide(t, nil)
		ps, url := pubsubNode(t, nil, tel.obs)
		got := subscribe(t, url, tel.obs)
		ctx, app := tel.tp.Tracer("test").Start(t.Context(), "app")
		if err := ps.Publish(ctx, []string{"orders"}, 7); err != nil {
			t.Fatal(err)
		}
		app.End()
		wait(t, got)
		checkNotifyTrace(t, tel, tel.ended(t, "app", trace.SpanKindInternal))
	})
}
