package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wsrpc/wsrpc"
)

// startServer serves mux with a wsrpc server on /ws of a loopback port
// until the test ends, and returns its URL and the server.
func startServer(t *testing.T, mux *wsrpc.Mux, opts *wsrpc.ServerOptions) (string, *wsrpc.Server) {
	t.Helper()
	if opts == nil {
		opts = new(wsrpc.ServerOptions)
	}
	opts.Logger = slog.New(slog.DiscardHandler)
	srv, err := wsrpc.NewServer(mux, opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hm := http.NewServeMux()
	hm.Handle("GET /ws", srv)
	hs := &http.Server{Handler: hm, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		hs.Shutdown(ctx)
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return "ws://" + ln.Addr().String() + "/ws", srv
}

// parseBench decodes the one JSON line of a bench run.
func parseBench(t *testing.T, r result) map[string]any {
	t.Helper()
	if strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("stdout is not one line:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
	}
	for _, k := range []string{"calls", "errors", "secs", "calls_per_sec", "p50_us", "p90_us", "p99_us", "max_us"} {
		if _, ok := m[k].(float64); !ok {
			t.Errorf("key %q missing or not a number in %s", k, r.stdout)
		}
	}
	return m
}

func TestBench(t *testing.T) {
	t.Parallel()
	url := startDemo(t, "")
	r := runCmd(t, "", "bench", url, "--duration", "300ms", "--warmup", "0",
		"--conns", "2", "--inflight", "4", "--payload", "40", "--json")
	if r.code != exitOK {
		t.Fatalf("exit %d, want 0; stderr:\n%s", r.code, r.stderr)
	}
	m := parseBench(t, r)
	if m["calls"].(float64) <= 0 || m["errors"].(float64) != 0 {
		t.Errorf("calls %v, errors %v; want calls > 0 and no errors", m["calls"], m["errors"])
	}
	p50, p90, p99, pmax := m["p50_us"].(float64), m["p90_us"].(float64), m["p99_us"].(float64), m["max_us"].(float64)
	if !(0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= pmax) {
		t.Errorf("percentiles not ordered: p50 %v, p90 %v, p99 %v, max %v", p50, p90, p99, pmax)
	}
	if m["conns"] != 2.0 || m["inflight"] != 4.0 || m["payload"] != 40.0 || m["secs"] != 0.3 {
		t.Errorf("settings not echoed: %s", r.stdout)
	}
}

// TestBenchTable checks the default output: a header and one row.
func TestBenchTable(t *testing.T) {
	t.Parallel()
	url := startDemo(t, "")
	r := runCmd(t, "", "bench", strings.TrimPrefix(url, "ws://"), "--duration", "100ms", "--warmup", "50ms", "--payload", "3")
	if r.code != exitOK {
		t.Fatalf("exit %d, want 0; stderr:\n%s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("want a header and a row, got:\n%s", r.stdout)
	}
	head, row := strings.Fields(lines[0]), strings.Fields(lines[1])
	want := []string{"conns", "inflight", "payload", "duration", "calls", "calls/s", "p50_us", "p90_us", "p99_us", "max_us", "errors"}
	if strings.Join(head, " ") != strings.Join(want, " ") || len(row) != len(want) {
		t.Errorf("table:\n%s", r.stdout)
	}
	if row[0] != "1" || row[1] != "1" || row[2] != "3" || row[3] != "100ms" || row[10] != "0" {
		t.Errorf("row %q", row)
	}
}

// TestBenchWrongAnswer runs bench against an echo that answers wrongly.
func TestBenchWrongAnswer(t *testing.T) {
	t.Parallel()
	mux := wsrpc.NewMux()
	wsrpc.Register(mux, "echo", func(_ context.Context, a struct {
		Text string `json:"text"`
	}) (string, error) {
		return a.Text + "!", nil
	})
	url, _ := startServer(t, mux, nil)
	r := runCmd(t, "", "bench", url, "--duration", "200ms", "--warmup", "0", "--inflight", "2", "--json")
	if r.code != exitRemote {
		t.Errorf("exit %d, want %d; stderr:\n%s", r.code, exitRemote, r.stderr)
	}
	m := parseBench(t, r)
	if m["errors"].(float64) <= 0 || m["calls"].(float64) != 0 {
		t.Errorf("calls %v, errors %v; want only errors", m["calls"], m["errors"])
	}
	if !strings.Contains(r.stderr, "wrong answer") {
		t.Errorf("stderr does not tell the wrong answer:\n%s", r.stderr)
	}
}

// TestBenchMethodError runs bench on a method that does not exist.
func TestBenchMethodError(t *testing.T) {
	t.Parallel()
	url := startDemo(t, "")
	r := runCmd(t, "", "bench", url, "--method", "nope", "--duration", "100ms", "--warmup", "0", "--json")
	if r.code != exitRemote || !strings.Contains(r.stderr, "method not found") {
		t.Errorf("exit %d, stderr:\n%s\nwant %d and the error", r.code, r.stderr, exitRemote)
	}
}

func TestBenchConnectFailure(t *testing.T) {
	t.Parallel()
	url := deadURL(t)
	r := runCmd(t, "", "bench", url, "--duration", "100ms")
	if r.code != exitFail || r.stdout != "" || !strings.HasPrefix(r.stderr, "wsrpc: ") {
		t.Errorf("exit %d, stdout %q, stderr %q; want %d and an error", r.code, r.stdout, r.stderr, exitFail)
	}

	url = startDemo(t, "secret")
	r = runCmd(t, "", "bench", url, "--duration", "100ms", "--conns", "3")
	if r.code != exitFail || !strings.Contains(r.stderr, "403") {
		t.Errorf("without the token: exit %d, stderr %q; want %d and 403", r.code, r.stderr, exitFail)
	}
	r = runCmd(t, "", "bench", url, "--duration", "100ms", "--warmup", "0", "--header", "X-Token: secret")
	if r.code != exitOK {
		t.Errorf("with the token: exit %d, stderr %q; want 0", r.code, r.stderr)
	}
}

func TestBenchUsageErrors(t *testing.T) {
	t.Parallel()
	const u = "ws://127.0.0.1:1/ws"
	tests := []struct {
		args []string
		want string
	}{
		{[]string{}, "want one URL"},
		{[]string{u, u}, "want one URL"},
		{[]string{u, "--conns", "0"}, "at least 1"},
		{[]string{u, "--inflight", "-1"}, "at least 1"},
		{[]string{u, "--payload", "0"}, "at least 1"},
		{[]string{u, "--conns", "1000", "--inflight", "1000"}, "at most"},
		{[]string{u, "--payload", "100000000"}, "at most"},
		{[]string{u, "--duration", "0"}, "--duration must be positive"},
		{[]string{u, "--warmup", "-1s"}, "--duration must be positive"},
		{[]string{u, "--method", ""}, "--method must not be empty"},
		{[]string{u, "--header", "x"}, `want "Key: value"`},
		{[]string{u, "--nope"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		r := runCmd(t, "", append([]string{"bench"}, tt.args...)...)
		if r.code != exitFail || !strings.Contains(r.stderr, tt.want) || r.stdout != "" {
			t.Errorf("bench %q: exit %d, stderr %q; want %d and %q", tt.args, r.code, r.stderr, exitFail, tt.want)
		}
	}
}

// TestNewCommandsHelp checks the help of bench and idle as TestHelp and
// TestHelpListsEveryFlag do for the others.
func TestNewCommandsHelp(t *testing.T) {
	t.Parallel()
	for name, fs := range map[string]*flag.FlagSet{
		"bench": new(benchFlags).flagSet(),
		"idle":  new(idleFlags).flagSet(),
	} {
		for _, args := range [][]string{{name, "--help"}, {name, "-h"}, {"help", name}, {name, "ws://127.0.0.1:1/ws", "--help"}} {
			r := runCmd(t, "", args...)
			if r.code != exitOK || r.stderr != "" {
				t.Errorf("%q: exit %d, stderr %q; want 0 and nothing", args, r.code, r.stderr)
			}
			if !strings.HasPrefix(r.stdout, "Usage: wsrpc "+name+" [flags] URL\n") || !strings.Contains(r.stdout, "\nExamples:\n") {
				t.Errorf("%q: help without usage line or examples:\n%s", args, r.stdout)
			}
		}
		help := runCmd(t, "", name, "--help").stdout
		fs.VisitAll(func(f *flag.Flag) {
			if !strings.Contains(help, "\n  -"+f.Name+" ") && !strings.Contains(help, "\n  --"+f.Name+" ") {
				t.Errorf("wsrpc %s --help does not list -%s", name, f.Name)
			}
		})
	}
	if r := runCmd(t, "", "--help"); !strings.Contains(r.stdout, "\n  bench ") || !strings.Contains(r.stdout, "\n  idle ") {
		t.Errorf("wsrpc --help does not list bench and idle:\n%s", r.stdout)
	}
}

func TestHistogram(t *testing.T) {
	t.Parallel()
	var h histogram
	if h.quantile(0.5) != 0 {
		t.Error("empty histogram: quantile not 0")
	}
	// Every value comes back from its bucket within 1%.
	for _, v := range []uint64{0, 1, 127, 128, 129, 1000, 12345, 999999, 1 << 30, 1<<40 - 1} {
		var one histogram
		one.record(v)
		if got := histMid(histIndex(v)); math.Abs(float64(got)-float64(v)) > 0.01*float64(v) {
			t.Errorf("value %d: bucket midpoint %d", v, got)
		}
		if got := one.quantile(0.5); got != v {
			t.Errorf("value %d alone: median %d", v, got)
		}
	}
	// Buckets are contiguous and ordered.
	for v := uint64(1); v < 1<<20; v++ {
		if d := histIndex(v) - histIndex(v-1); d != 0 && d != 1 {
			t.Fatalf("index jumps by %d from %d to %d", d, v-1, v)
		}
	}
	if histIndex(1<<40-1) != histBuckets-1 {
		t.Errorf("largest index %d, want %d", histIndex(1<<40-1), histBuckets-1)
	}
	// 1..100000 µs, uniformly, over two merged histograms.
	var a, b histogram
	for v := uint64(1); v <= 100000; v++ {
		if v%2 == 0 {
			a.record(v * 1000)
		} else {
			b.record(v * 1000)
		}
	}
	b.record(1 << 50) // clamped
	a.merge(&b)
	for _, q := range []float64{0.5, 0.9, 0.99} {
		want := q * 100000 * 1000
		if got := float64(a.quantile(q)); math.Abs(got-want) > 0.01*want {
			t.Errorf("quantile %v = %v, want %v within 1%%", q, got, want)
		}
	}
	if a.max != 1<<40-1 || a.quantile(1) != a.max || a.n != 100001 {
		t.Errorf("max %d, quantile(1) %d, n %d", a.max, a.quantile(1), a.n)
	}
}
