package promwsrpc_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/promwsrpc"
)

// benchPair returns a client connected over loopback to a server with
// echo, both observed as obs says: "none", "nop" (a wsrpc.NopObserver:
// what the core's observer calls cost), or "prometheus" (a Metrics of
// their own on each side, registered, as in a program).
func benchPair(b *testing.B, obs string) *wsrpc.Client {
	var srvObs, cliObs wsrpc.Observer
	switch obs {
	case "nop":
		srvObs, cliObs = wsrpc.NopObserver{}, wsrpc.NopObserver{}
	case "prometheus":
		sm, cm := promwsrpc.New(nil), promwsrpc.New(nil)
		prometheus.NewRegistry().MustRegister(sm)
		prometheus.NewRegistry().MustRegister(cm)
		srvObs, cliObs = sm, cm
	}
	mux := wsrpc.NewMux()
	wsrpc.Register(mux, "echo", func(_ context.Context, a textArgs) (string, error) { return a.Text, nil })
	srv, err := wsrpc.NewServer(mux, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{
		Observer: srvObs, Logger: quiet, KeepAlive: noKeepAlive,
	}})
	if err != nil {
		b.Fatal(err)
	}
	hs := testServer(b, srv, nil)
	cl, err := wsrpc.Dial(b.Context(), wsURL(hs), &wsrpc.DialOptions{ConnOptions: wsrpc.ConnOptions{
		Observer: cliObs, Logger: quiet, KeepAlive: noKeepAlive,
	}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cl.Close() })
	return cl
}

var observers = []string{"none", "nop", "prometheus"}

// BenchmarkRoundTrip is one echo call at a time over a loopback
// WebSocket, without an Observer, with a NopObserver and with a Metrics
// on both sides: none to nop is what the core's Observer calls cost (a
// CallInfo per call and side), nop to prometheus what the adapter adds
// (a client call and a server call counted and timed, four frames, the
// send queues' gauges).
func BenchmarkRoundTrip(b *testing.B) {
	for _, o := range observers {
		b.Run("observer="+o, func(b *testing.B) {
			cl := benchPair(b, o)
			ctx := context.Background()
			args := textArgs{"0123456789abcdef"}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := wsrpc.Call[string](ctx, cl, "echo", args); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRoundTripParallel is many echo calls in flight at once on one
// loopback connection, observed as in BenchmarkRoundTrip: the adapter's
// counters are shared by every call.
func BenchmarkRoundTripParallel(b *testing.B) {
	for _, o := range observers {
		b.Run("observer="+o, func(b *testing.B) {
			cl := benchPair(b, o)
			ctx := context.Background()
			b.ReportAllocs()
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := wsrpc.Call[string](ctx, cl, "echo", textArgs{"0123456789abcdef"}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkObserver is what a Metrics does per round trip, without the
// connection around it: "calls" a call's CallStarted and CallEnded with
// the core's two clock reads (time.Now at the start, time.Since at the
// end), "clock" those reads alone, "frames" the Frame and Queue callbacks
// of a request read and its answer written.
func BenchmarkObserver(b *testing.B) {
	m := promwsrpc.New(nil)
	ctx := context.Background()
	var ci wsrpc.CallInfo
	b.Run("calls", func(b *testing.B) {
		for b.Loop() {
			ci = wsrpc.CallInfo{Method: "echo", Dir: wsrpc.Inbound, Start: time.Now(), RequestBytes: 60}
			c := m.CallStarted(ctx, nil, &ci)
			ci.Duration = time.Since(ci.Start)
			m.CallEnded(c, nil, &ci)
		}
	})
	b.Run("clock", func(b *testing.B) {
		for b.Loop() {
			ci.Start = time.Now()
			ci.Duration = time.Since(ci.Start)
		}
	})
	b.Run("frames", func(b *testing.B) {
		for b.Loop() {
			m.Frame(nil, wsrpc.Inbound, 60)
			m.Queue(nil, 1, 64, 0)
			m.Frame(nil, wsrpc.Outbound, 40)
			m.Queue(nil, -1, -64, 0)
		}
	})
}
