package otelwsrpc

import (
	"context"

	"go.opentelemetry.io/otel/propagation"

	"github.com/wsrpc/wsrpc/cluster"
)

// ClusterTrace carries W3C trace context with calls that package cluster
// routes to a client on another node (set it as cluster.Options.Trace):
// the call the owner node makes to the client, which an Observer on that
// node traces, continues the trace of the caller's ctx, so one trace
// follows a call across the two nodes.
type ClusterTrace struct{}

var _ cluster.TracePropagator = ClusterTrace{}

// Inject returns the traceparent and tracestate of ctx's span.
func (ClusterTrace) Inject(ctx context.Context) (traceparent, tracestate string) {
	var c carrier
	propagation.TraceContext{}.Inject(ctx, &c)
	return c.parent, c.state
}

// Extract returns ctx with the remote span context that traceparent and
// tracestate describe, the parent of the spans started from it.
func (ClusterTrace) Extract(ctx context.Context, traceparent, tracestate string) context.Context {
	return propagation.TraceContext{}.Extract(ctx, &carrier{parent: traceparent, state: tracestate})
}
