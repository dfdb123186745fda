package main

import (
	"context"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/pubsub"
)

// collector is an OTLP/HTTP trace receiver on a loopback port: it keeps
// the spans it is sent.
type collector struct {
	mu sync.Mutex
	// span name -> each span's string attributes, and "trace_id", the
	// span's, and "link.trace_id", its first link's
	spans map[string][]map[string]string
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil || r.URL.Path != "/v1/traces" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	var req coltrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				attrs := map[string]string{"service.name": service}
				for _, a := range sp.GetAttributes() {
					attrs[a.GetKey()] = a.GetValue().GetStringValue()
				}
				attrs["trace_id"] = hex.EncodeToString(sp.GetTraceId())
				if links := sp.GetLinks(); len(links) > 0 {
					attrs["link.trace_id"] = hex.EncodeToString(links[0].GetTraceId())
				}
				c.spans[sp.GetName()] = append(c.spans[sp.GetName()], attrs)
			}
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	resp, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	w.Write(resp)
}

// TestServeOTLP: with --otlp, wsrpc serve traces the calls it serves and
// exports the spans to an OTLP/HTTP collector, at the latest when it
// stops.
func TestServeOTLP(t *testing.T) {
	t.Parallel()
	col := &collector{spans: map[string][]map[string]string{}}
	hs := httptest.NewServer(col)
	defer hs.Close()
	s := startServeArgs(t, []string{"--otlp", hs.URL}, nil)
	client := dialQuiet(t, s.url, nil)
	for range 2 {
		if _, err := wsrpc.Call[float64](t.Context(), client, "add", map[string]int{"a": 1, "b": 2}); err != nil {
			t.Fatal(err)
		}
	}
	client.Close()
	if c := s.stop(); c != exitOK {
		t.Fatalf("serve exited with %d: %s", c, s.stderr.String())
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	spans := col.spans["add"]
	if len(spans) != 2 {
		t.Fatalf("the collector got %d spans named add, want 2; all: %v", len(spans), col.spans)
	}
	for _, a := range spans {
		if a["rpc.method"] != "add" || a["service.name"] != "wsrpc" {
			t.Errorf("span attributes %v, want rpc.method add, service.name wsrpc", a)
		}
	}
	if _, ok := col.spans["_ping_"]; ok {
		t.Error("keep-alive pings were traced")
	}
}

// TestServeOTLPPubSub: with --otlp, the notify by which wsrpc serve
// delivers an event is a span of the messaging conventions, in a trace of
// its own, linked to the span of the publish call that published it.
func TestServeOTLPPubSub(t *testing.T) {
	t.Parallel()
	col := &collector{spans: map[string][]map[string]string{}}
	hs := httptest.NewServer(col)
	defer hs.Close()
	s := startServeArgs(t, []string{"--otlp", hs.URL}, nil)
	deliverAcross(t, s.url, s.url)
	if c := s.stop(); c != exitOK {
		t.Fatalf("serve exited with %d: %s", c, s.stderr.String())
	}
	checkNotifyLinked(t, col)
}

// deliverAcross subscribes a pubsub.Client of subURL to "orders", has one
// of pubURL publish 7 there, waits for the subscriber to get it, and
// closes both clients.
func deliverAcross(t *testing.T, subURL, pubURL string) {
	t.Helper()
	ctx := t.Context()
	quiet := &pubsub.ClientOptions{DialOptions: wsrpc.DialOptions{ConnOptions: wsrpc.ConnOptions{Logger: slog.New(slog.DiscardHandler)}}}
	sub, err := pubsub.Dial(ctx, subURL, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	got := make(chan pubsub.Event, 1)
	if err := sub.Subscribe(ctx, "orders", func(_ context.Context, ev pubsub.Event) error { got <- ev; return nil }); err != nil {
		t.Fatal(err)
	}
	pub, err := pubsub.Dial(ctx, pubURL, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.Publish(ctx, []string{"orders"}, 7); err != nil {
		t.Fatal(err)
	}
	recvEvent(t, got, "7")
}

// recvEvent waits, within 30 s, for the event on got, whose data must be
// want.
func recvEvent(t *testing.T, got <-chan pubsub.Event, want string) {
	t.Helper()
	select {
	case ev := <-got:
		if string(ev.Data) != want {
			t.Fatalf("event %s, want %s", ev.Data, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no event")
	}
}

// checkNotifyLinked checks the spans col got of one event's delivery: one
// publish span and one notify span, the notify a span of the messaging
// conventions for topic orders, in a trace of its own, linked to the
// publish's.
func checkNotifyLinked(t *testing.T, col *collector) {
	t.Helper()
	col.mu.Lock()
	defer col.mu.Unlock()
	publish, notify := col.spans["publish"], col.spans["notify"]
	if len(publish) != 1 || len(notify) != 1 {
		t.Fatalf("the collector got %d publish and %d notify spans, want 1 each; all: %v", len(publish), len(notify), col.spans)
	}
	n := notify[0]
	if n["messaging.operation.type"] != "send" || n["messaging.destination.name"] != "orders" || n["messaging.system"] != "wsrpc" {
		t.Errorf("notify span attributes %v, want the messaging conventions' for topic orders", n)
	}
	if n["link.trace_id"] != publish[0]["trace_id"] || n["trace_id"] == publish[0]["trace_id"] {
		t.Errorf("notify span in trace %s linked to %s; want a trace of its own linked to the publish's, %s", n["trace_id"], n["link.trace_id"], publish[0]["trace_id"])
	}
}

// TestServeOTLPBadURL: an --otlp that is no http(s) URL fails at startup.
func TestServeOTLPBadURL(t *testing.T) {
	t.Parallel()
	r := runCmd(t, "", "serve", "--addr", "127.0.0.1:0", "--otlp", "127.0.0.1:4318")
	if r.code != exitFail || !strings.Contains(r.stderr, "--otlp") {
		t.Errorf("exit %d, stderr %q; want %d and what --otlp takes", r.code, r.stderr, exitFail)
	}
}
