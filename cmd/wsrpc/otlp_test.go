package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/wsrpc/wsrpc"
)

// collector is an OTLP/HTTP trace receiver on a loopback port: it keeps
// the spans it is sent.
type collector struct {
	mu    sync.Mutex
	spans map[string][]map[string]string // span name -> each span's string attributes
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

// TestServeOTLPBadURL: an --otlp that is no http(s) URL fails at startup.
func TestServeOTLPBadURL(t *testing.T) {
	t.Parallel()
	r := runCmd(t, "", "serve", "--addr", "127.0.0.1:0", "--otlp", "127.0.0.1:4318")
	if r.code != exitFail || !strings.Contains(r.stderr, "--otlp") {
		t.Errorf("exit %d, stderr %q; want %d and what --otlp takes", r.code, r.stderr, exitFail)
	}
}
