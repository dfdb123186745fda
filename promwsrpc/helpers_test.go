package promwsrpc_test

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/wsrpc/wsrpc"
)

// quiet is a logger that drops everything.
var quiet = slog.New(slog.DiscardHandler)

// noKeepAlive disables pings, so that the frames counted are the calls'.
var noKeepAlive = wsrpc.KeepAlive{Interval: -1}

// testServer serves srv on a loopback httptest server at /ws, and the
// metrics of reg at /metrics; it returns the base URL (http://host:port).
// Everything is closed when the test ends.
func testServer(t testing.TB, srv *wsrpc.Server, reg prometheus.Gatherer) *httptest.Server {
	t.Helper()
	routes := http.NewServeMux()
	routes.Handle("/ws", srv)
	if reg != nil {
		routes.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	}
	hs := httptest.NewServer(routes)
	t.Cleanup(func() {
		srv.Close() // httptest's Close leaves hijacked connections alone
		hs.Close()
	})
	return hs
}

func wsURL(hs *httptest.Server) string { return "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws" }

// scrape gets url with a real HTTP client and returns the series it
// exposes (see flatten).
func scrape(t *testing.T, c *http.Client, url string) map[string]float64 {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return flatten(slices.Collect(maps.Values(mfs)))
}

// gather returns the series of g (see flatten).
func gather(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return flatten(mfs)
}

// flatten returns the value of each series, keyed as the text format
// writes it with the labels in order: `name{a="x",b="y"}`, or `name`
// without labels; a histogram gives name_count and name_sum.
func flatten(mfs []*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := m.GetLabel()
			slices.SortFunc(labels, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
			var ls []string
			for _, l := range labels {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			suffix := ""
			if len(ls) > 0 {
				suffix = "{" + strings.Join(ls, ",") + "}"
			}
			name := mf.GetName()
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[name+suffix] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[name+suffix] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[name+"_count"+suffix] = float64(m.GetHistogram().GetSampleCount())
				out[name+"_sum"+suffix] = m.GetHistogram().GetSampleSum()
			default:
				out[name+suffix] = m.GetUntyped().GetValue()
			}
		}
	}
	return out
}

// expect checks that each series of want has exactly its value in got.
func expect(t *testing.T, side string, got map[string]float64, want map[string]float64) {
	t.Helper()
	for _, k := range slices.Sorted(maps.Keys(want)) {
		v, ok := got[k]
		switch {
		case !ok:
			t.Errorf("%s: no series %s (want %v)", side, k, want[k])
		case v != want[k]:
			t.Errorf("%s: %s = %v, want %v", side, k, v, want[k])
		}
	}
}

// absent checks that got has no series whose key starts with any of
// prefixes.
func absent(t *testing.T, side string, got map[string]float64, prefixes ...string) {
	t.Helper()
	for _, k := range slices.Sorted(maps.Keys(got)) {
		for _, p := range prefixes {
			if strings.HasPrefix(k, p) {
				t.Errorf("%s: unexpected series %s = %v", side, k, got[k])
			}
		}
	}
}

// recv receives from ch; after a minute, a bound for a test that would
// hang, not a timing assertion, it fails the test.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(time.Minute):
		t.Fatalf("no %s after a minute", what)
		panic("unreachable")
	}
}
