package otelwsrpc_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/otelwsrpc"
)

// BenchmarkRoundTrip is one echo call at a time over a loopback
// WebSocket, with no Observer, a wsrpc.NopObserver (the core's observer
// path alone), and an otelwsrpc Observer on each side, with SDK providers
// that sample every span (into a span processor that drops them) and
// aggregate the metrics (into a reader never collected).
func BenchmarkRoundTrip(b *testing.B) {
	for _, name := range []string{"none", "nop", "otel"} {
		b.Run("observer="+name, func(b *testing.B) {
			var srvObs, cliObs wsrpc.Observer
			switch name {
			case "nop":
				srvObs, cliObs = wsrpc.NopObserver{}, wsrpc.NopObserver{}
			case "otel":
				srvObs, cliObs = benchObserver(b), benchObserver(b)
			}
			quiet := slog.New(slog.DiscardHandler)
			noKA := wsrpc.KeepAlive{Interval: -1}
			mux := wsrpc.NewMux()
			wsrpc.Register(mux, "echo", func(_ context.Context, a textArgs) (string, error) { return a.Text, nil })
			srv, err := wsrpc.NewServer(mux, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{Observer: srvObs, Logger: quiet, KeepAlive: noKA}})
			if err != nil {
				b.Fatal(err)
			}
			hs := httptest.NewServer(srv)
			defer hs.Close()
			defer srv.Close()
			cl, err := wsrpc.Dial(b.Context(), "ws"+strings.TrimPrefix(hs.URL, "http"), &wsrpc.DialOptions{
				ConnOptions: wsrpc.ConnOptions{Observer: cliObs, Logger: quiet, KeepAlive: noKA},
			})
			if err != nil {
				b.Fatal(err)
			}
			defer cl.Close()
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

type dropSpans struct{}

func (dropSpans) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (dropSpans) OnEnd(sdktrace.ReadOnlySpan)                     {}
func (dropSpans) Shutdown(context.Context) error                  { return nil }
func (dropSpans) ForceFlush(context.Context) error                { return nil }

func benchObserver(b *testing.B) *otelwsrpc.Observer {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(dropSpans{}))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() {
		tp.Shutdown(context.Background())
		mp.Shutdown(context.Background())
	})
	obs, err := otelwsrpc.New(&otelwsrpc.Options{TracerProvider: tp, MeterProvider: mp})
	if err != nil {
		b.Fatal(err)
	}
	return obs
}
