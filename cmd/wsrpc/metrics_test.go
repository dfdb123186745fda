package main

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wsrpc/wsrpc"
)

// TestServeMetrics: with --metrics, wsrpc serve serves Prometheus metrics
// that count the real calls a client made, and the connection it holds.
func TestServeMetrics(t *testing.T) {
	t.Parallel()
	s := startServeArgs(t, []string{"--metrics", "127.0.0.1:0"}, nil)
	client := dialQuiet(t, s.url, nil)
	for range 3 {
		if _, err := wsrpc.Call[float64](t.Context(), client, "add", map[string]int{"a": 1, "b": 2}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := wsrpc.Call[float64](t.Context(), client, "add", map[string]string{"a": "x"}); err == nil {
		t.Fatal("add with a string succeeded")
	}
	if _, err := wsrpc.Call[any](t.Context(), client, "no_such_method", nil); err == nil {
		t.Fatal("an unknown method succeeded")
	}
	if _, err := wsrpc.Call[any](t.Context(), client, "publish", map[string]any{"topics": []string{"news"}, "data": 1}); err != nil {
		t.Fatal(err)
	}
	// The server counts a call once its answer is on its way: the client
	// can have the answers before the last add is counted. Scrape until it
	// is (a minute at most, against a hang).
	var text string
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		text = scrape(t, s)
		ok, _ := seriesValue(text, `wsrpc_server_handled_total{code="OK",method="add"}`)
		invalid, _ := seriesValue(text, `wsrpc_server_handled_total{code="InvalidParams",method="add"}`)
		if ok == "3" && invalid == "1" || time.Now().After(deadline) {
			break
		}
	}
	for series, want := range map[string]string{
		`wsrpc_server_started_total{method="add"}`:                               "4",
		`wsrpc_server_handled_total{code="OK",method="add"}`:                     "3",
		`wsrpc_server_handled_total{code="InvalidParams",method="add"}`:          "1",
		`wsrpc_server_refused_total{method="unknown",reason="method_not_found"}`: "1",
		`wsrpc_connections_open`:                                                 "1",
		`wsrpc_server_handling_seconds_count{method="add"}`:                      "4",
	} {
		got, ok := seriesValue(text, series)
		if !ok {
			t.Errorf("no series %s in /metrics", series)
			continue
		}
		if got != want {
			t.Errorf("%s = %s, want %s", series, got, want)
		}
	}
	if !regexp.MustCompile(`(?m)^wsrpc_pubsub_published_total [1-9]`).MatchString(text) {
		t.Error("/metrics does not count the event published (wsrpc_pubsub_published_total)")
	}
	if !strings.Contains(text, "\ngo_goroutines ") || !strings.Contains(text, "\nprocess_start_time_seconds ") {
		t.Error("/metrics lacks the Go runtime's or the process's series")
	}
	http.DefaultClient.CloseIdleConnections()
}

// scrape returns the text that s, run with --metrics, serves at /metrics,
// checking it is served as Prometheus's text format.
func scrape(t *testing.T, s *serveRun) string {
	t.Helper()
	url := "http://" + s.demo.metricsLn.Addr().String() + "/metrics"
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET %s: %s, %q", url, resp.Status, resp.Header.Get("Content-Type"))
	}
	return string(body)
}

// seriesValue returns the value of series (its name and labels as the text
// format writes them) in a /metrics text.
func seriesValue(text, series string) (string, bool) {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// TestServeMetricsListenError: a --metrics address that cannot be listened
// on is a failure at startup, like --addr's.
func TestServeMetricsListenError(t *testing.T) {
	t.Parallel()
	r := runCmd(t, "", "serve", "--addr", "127.0.0.1:0", "--metrics", "127.0.0.1:-1")
	if r.code != exitFail || !strings.HasPrefix(r.stderr, "wsrpc: listen tcp") {
		t.Errorf("exit %d, stderr %q; want %d and the listen error", r.code, r.stderr, exitFail)
	}
}
