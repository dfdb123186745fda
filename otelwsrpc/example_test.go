package otelwsrpc_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"

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
