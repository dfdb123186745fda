package otelwsrpc

import (
	"context"

	"go.opentelemetry.io/otel/propagation"

	"github.com/wsrpc/wsrpc"
)

// Propagator carries W3C trace context across a broker, where a call's
// own frame cannot: it is a [wsrpc.TracePropagator]. Set it as
// cluster.Options.Trace, and the call a routed call's owner node makes to
// the client continues the trace of the caller's ctx, so one trace follows
// a call across the two nodes. Set it as pubsub.Options.Trace, and each
// notify that delivers an event starts a span linked to the publish's span
// ([Observer.CallStarted]), on this node and, through the broker, on the
// others.
type Propagator struct{}

var _ wsrpc.TracePropagator = Propagator{}

// Inject returns the traceparent and tracestate of ctx's span.
func (Propagator) Inject(ctx context.Context) (traceparent, tracestate string) {
	var c carrier
	propagation.TraceContext{}.Inject(ctx, &c)
	return c.parent, c.state
}

// Extract returns ctx with the remote span context that traceparent and
// tracestate describe, the parent of the spans started from it.
func (Propagator) Extract(ctx context.Context, traceparent, tracestate string) context.Context {
	return propagation.TraceContext{}.Extract(ctx, &carrier{parent: traceparent, state: tracestate})
}
