package otelwsrpc_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net/http/httptest"
	"strings"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/otelwsrpc"
)

// A server and a client traced with one TracerProvider: the client's span
// of the call and the server's span of its handling are one trace.
func Example() {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(context.Background())
	obs, err := otelwsrpc.New(&otelwsrpc.Options{TracerProvider: tp})
	if err != nil {
		panic(err)
	}

	mux := wsrpc.NewMux()
	wsrpc.RegisterUtilities(mux)
	srv, err := wsrpc.NewServer(mux, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{Observer: obs}})
	if err != nil {
		panic(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer srv.Close()

	ctx := context.Background()
	cl, err := wsrpc.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http"), &wsrpc.DialOptions{
		ConnOptions: wsrpc.ConnOptions{Observer: obs},
	})
	if err != nil {
		panic(err)
	}
	if _, err := wsrpc.Call[string](ctx, cl, "echo", map[string]string{"text": "hi"}); err != nil {
		panic(err)
	}
	cl.Close()
	srv.Close() // waits for the handler, whose span ends with it

	ended := spans.Ended()
	for _, sp := range ended {
		fmt.Println(sp.SpanKind(), sp.Name(), sp.SpanContext().TraceID() == ended[0].SpanContext().TraceID())
	}
	// Unordered output:
	// client echo true
	// server echo true
}

// An Observer made from a TracerProvider and a MeterProvider (a program
// would give them an OTLP exporter and a periodic reader), on a server,
// joined with a call log.
func ExampleNew() {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(context.Background())
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	logger := slog.New(slog.DiscardHandler)
	mux := wsrpc.NewMux()
	wsrpc.RegisterUtilities(mux)

	obs, err := otelwsrpc.New(&otelwsrpc.Options{TracerProvider: tp, MeterProvider: mp})
	if err != nil {
		log.Fatal(err)
	}
	srv, err := wsrpc.NewServer(mux, &wsrpc.ServerOptions{
		// Joined with a call log; a promwsrpc.Metrics joins the same way.
		ConnOptions: wsrpc.ConnOptions{Observer: wsrpc.JoinObservers(obs, wsrpc.LogCalls(logger, slog.LevelDebug))},
	})
	if err != nil {
		log.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()

	ctx := context.Background()
	cl, err := wsrpc.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http"), nil)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := wsrpc.Call[string](ctx, cl, "echo", map[string]string{"text": "hi"}); err != nil {
		log.Fatal(err)
	}
	cl.Close()
	srv.Close()

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		log.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			fmt.Println(m.Name, m.Unit, m.Data.(metricdata.Histogram[float64]).DataPoints[0].Count)
		}
	}
	for _, sp := range spans.Ended() {
		fmt.Println(sp.SpanKind(), sp.Name())
	}
	// Output:
	// rpc.server.call.duration s 1
	// server echo
}
