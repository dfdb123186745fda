package main

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/otelwsrpc"
)

// otlpFlushTimeout bounds the export of the spans still buffered when
// wsrpc serve stops.
const otlpFlushTimeout = 5 * time.Second

// startOTLP returns an observer that traces every call (otelwsrpc) and
// exports the spans over OTLP/HTTP to url (http://HOST:4318, or with a
// path: /v1/traces is the default), and the function that flushes and
// stops the exporter.
func startOTLP(raw string) (wsrpc.Observer, func() error, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, nil, fmt.Errorf("--otlp %s: want http://HOST:PORT[/PATH] or https://", redact(raw))
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces" // as the OTLP/HTTP exporter's own default
	}
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(u.String()))
	if err != nil {
		return nil, nil, fmt.Errorf("--otlp %s: %w", redact(raw), err)
	}
	res := resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName("wsrpc"))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	obs, err := otelwsrpc.New(&otelwsrpc.Options{TracerProvider: tp})
	if err != nil {
		tp.Shutdown(context.Background())
		return nil, nil, err
	}
	stop := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), otlpFlushTimeout)
		defer cancel()
		return tp.Shutdown(ctx)
	}
	return obs, stop, nil
}
