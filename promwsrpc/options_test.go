package promwsrpc_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/promwsrpc"
)

type codeArgs struct {
	Code int `json:"code"`
}

// TestCardinality: with MaxMethods 2 and MaxCodes 1, the first two method
// names seen keep their label values and later ones count under "other"
// (a kept name stays kept); unknown methods count as "unknown" and take
// no place; the first code outside wsrpc's own keeps its number, later
// ones count as "other", and wsrpc's own codes keep their names.
func TestCardinality(t *testing.T) {
	ctx := t.Context()
	m := promwsrpc.New(&promwsrpc.Options{MaxMethods: 2, MaxCodes: 1})
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	mux := wsrpc.NewMux()
	for _, name := range []string{"a", "b", "c", "d"} {
		wsrpc.Register(mux, name, func(context.Context, struct{}) (bool, error) { return true, nil })
	}
	wsrpc.Register(mux, "code", func(_ context.Context, a codeArgs) (bool, error) {
		return false, wsrpc.Errorf(wsrpc.Code(a.Code), "as asked")
	})
	srv, err := wsrpc.NewServer(mux, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{Observer: m, Logger: quiet}})
	if err != nil {
		t.Fatal(err)
	}
	hs := testServer(t, srv, nil)
	cl, err := wsrpc.Dial(ctx, wsURL(hs), &wsrpc.DialOptions{ConnOptions: wsrpc.ConnOptions{Logger: quiet}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	for _, name := range []string{"nope1", "a", "nope2", "b", "c", "d", "a", "_private"} {
		wsrpc.Call[bool](ctx, cl, name, nil)
	}
	// The server counts a call once its answer is on its way, so the
	// client can have the answer of one call before it is counted: wait
	// for each count, so that the codes are seen in this order.
	for i, code := range []int{7, 8, 9, 7, int(wsrpc.CodeInvalidParams)} {
		wsrpc.Call[bool](ctx, cl, "code", codeArgs{code})
		for handled(t, reg) < 2+i+1 { // c and d, then each code
			select {
			case <-ctx.Done():
				t.Fatalf("call %d of code not counted", i+1)
			case <-time.After(time.Millisecond):
			}
		}
	}
	cl.Close()
	srv.Close()

	got := gather(t, reg)
	expect(t, "server", got, map[string]float64{
		`wsrpc_server_started_total{method="a"}`:                                 2,
		`wsrpc_server_started_total{method="b"}`:                                 1,
		`wsrpc_server_started_total{method="other"}`:                             7, // c, d and the five calls of code
		`wsrpc_server_handled_total{code="7",method="other"}`:                    2,
		`wsrpc_server_handled_total{code="other",method="other"}`:                2,
		`wsrpc_server_handled_total{code="InvalidParams",method="other"}`:        1,
		`wsrpc_server_refused_total{method="unknown",reason="method_not_found"}`: 3,
	})
	n := 0
	for k := range got {
		if strings.HasPrefix(k, "wsrpc_server_started_total{") {
			n++
		}
	}
	if n != 3 {
		t.Errorf("%d method label values for started calls, want 3 (a, b, other)", n)
	}
	absent(t, "server", got, `wsrpc_server_started_total{method="c"}`, `wsrpc_server_handled_total{code="8"`, `wsrpc_server_refused_total{method="nope`)
}

// handled returns the calls of method "other" the server counted as
// handled, whatever their code.
func handled(t *testing.T, reg prometheus.Gatherer) int {
	n := 0.0
	for k, v := range gather(t, reg) {
		if strings.HasPrefix(k, "wsrpc_server_handled_total{") && strings.HasSuffix(k, `method="other"}`) {
			n += v
		}
	}
	return int(n)
}

// TestRoles: two Metrics registered on one registry under different
// constant labels, as the package doc shows, coexist and count apart.
func TestRoles(t *testing.T) {
	reg := prometheus.NewRegistry()
	front, back := promwsrpc.New(nil), promwsrpc.New(nil)
	prometheus.WrapRegistererWith(prometheus.Labels{"role": "front"}, reg).MustRegister(front)
	prometheus.WrapRegistererWith(prometheus.Labels{"role": "back"}, reg).MustRegister(back)
	front.ConnectTry("ws://x", 1, nil)
	expect(t, "registry", gather(t, reg), map[string]float64{
		`wsrpc_connect_tries_total{outcome="ok",role="front"}`: 1,
		`wsrpc_connect_tries_total{outcome="ok",role="back"}`:  0,
	})
}

// TestBadBuckets: New refuses buckets out of order at once.
func TestBadBuckets(t *testing.T) {
	for _, b := range [][]float64{{1, 0.5}, {1, 1}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New with Buckets %v did not panic", b)
				}
			}()
			promwsrpc.New(&promwsrpc.Options{Buckets: b})
		}()
	}
	promwsrpc.New(&promwsrpc.Options{Buckets: []float64{0.1, 1}}) // fine
}

// TestHotSeries: methods whose names share a slot of the series cache,
// called in turn, and methods over the cap ("other"), are each counted
// under their own label, in both directions.
func TestHotSeries(t *testing.T) {
	// Two names with the same slot, and a third of another.
	a, b := "", ""
	for i := 0; b == ""; i++ {
		n := fmt.Sprintf("m%d", i)
		switch {
		case a == "":
			a = n
		case promwsrpc.HotSlot(n) == promwsrpc.HotSlot(a):
			b = n
		}
	}
	m := promwsrpc.New(&promwsrpc.Options{MaxMethods: 2})
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	ctx := context.Background()
	calls := map[string]int{a: 3, b: 2, "over1": 2, "over2": 1}
	for range 3 {
		for _, name := range []string{a, b, "over1", "over2"} {
			if calls[name] == 0 {
				continue
			}
			calls[name]--
			for _, dir := range []wsrpc.Direction{wsrpc.Inbound, wsrpc.Outbound} {
				ci := &wsrpc.CallInfo{Method: name, Dir: dir, Duration: time.Millisecond}
				m.CallEnded(m.CallStarted(ctx, nil, ci), nil, ci)
			}
		}
	}
	got := gather(t, reg)
	for _, side := range []string{"server", "client"} {
		expect(t, side, got, map[string]float64{
			`wsrpc_` + side + `_started_total{method="` + a + `"}`:           3,
			`wsrpc_` + side + `_started_total{method="` + b + `"}`:           2,
			`wsrpc_` + side + `_started_total{method="other"}`:               3,
			`wsrpc_` + side + `_handled_total{code="OK",method="` + a + `"}`: 3,
			`wsrpc_` + side + `_handled_total{code="OK",method="` + b + `"}`: 2,
			`wsrpc_` + side + `_handled_total{code="OK",method="other"}`:     3,
			`wsrpc_` + side + `_handling_seconds_count{method="` + b + `"}`:  2,
			`wsrpc_` + side + `_handling_seconds_count{method="other"}`:      3,
		})
	}
}
