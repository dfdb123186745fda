package wsrpc

import "context"

// TracePropagator carries trace context where a call's own frame cannot:
// across a broker, with the calls package cluster routes to another node
// and with the events package pubsub sends to the others. Inject returns
// ctx's W3C traceparent and tracestate ("" for none), which travel with
// the message; Extract returns ctx with the ones that arrived.
// otelwsrpc.Propagator is one, for OpenTelemetry.
//
// The core itself carries a call's trace context in its request frame
// ([CallInfo].TraceParent, set by an [Observer]) and needs none.
type TracePropagator interface {
	Inject(ctx context.Context) (traceparent, tracestate string)
	Extract(ctx context.Context, traceparent, tracestate string) context.Context
}
