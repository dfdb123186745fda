// Package otelwsrpc traces and measures wsrpc calls with OpenTelemetry: an
// [Observer] is a [wsrpc.Observer] that makes a span for each call, on
// both sides and in both directions, carries the trace context to the
// peer, and records the calls' durations.
//
//	obs, err := otelwsrpc.New(&otelwsrpc.Options{TracerProvider: tp, MeterProvider: mp})
//	...
//	srv, err := wsrpc.NewServer(mux, &wsrpc.ServerOptions{
//		ConnOptions: wsrpc.ConnOptions{Observer: obs},
//	})
//
// The package is a module of its own, github.com/wsrpc/wsrpc/otelwsrpc, so
// that a program that imports only wsrpc never downloads OpenTelemetry.
//
// # Spans
//
// Each call gets a span named after its method: kind server for a call
// the peer made (inbound, served by a handler here), kind client for a
// call this side made (outbound). A server's callback to its client is a
// client span on the server and a server span on the client. The
// attributes follow the RPC semantic conventions (semconv v1.43.0):
//
//	rpc.system.name           "jsonrpc" (wsrpc's error codes are JSON-RPC's)
//	rpc.method                the method
//	network.peer.address      the peer's IP address; network.peer.port its port
//	server.address            on client spans: the server's IP address; server.port its port
//	wsrpc.connection.id       the connection's id, as the core's logs carry it ("conn")
//	rpc.response.status_code  on an error answer: its code in decimal ("-32602")
//	error.type                on a failure: the code, as above, or what ended a call
//	                          that got no answer: "deadline_exceeded", "canceled",
//	                          "connection_lost", "closed", "not_connected", "_OTHER"
//
// A failed call's span has status Error. A span starts when the core
// starts the call and ends when it ends ([wsrpc.CallInfo].Start and
// Duration).
//
// # Parents and the trace context
//
// An outbound call's span is the child of the span in the call's context.
// A handler's context holds its call's server span, so a call the handler
// makes with it (a callback to the caller, a call to another server) is
// that span's child. The request carries the client span's W3C trace
// context, as "traceparent" and "tracestate" beside "method" (PROTOCOL.md,
// "The wsrpc extension"), to a peer that negotiated the wsrpc.v1
// extension; [Options].AlwaysPropagate sends it to every peer. An inbound
// call whose request carried one gets a span in the caller's trace, the
// child of the caller's span, whichever peer sent it (with
// [Options].PublicEndpoint, a trace of its own with a link to the caller's
// span instead); one without starts a trace.
//
// # Pub/sub
//
// With pubsub.Options.Trace set to a [Propagator], each event carries its
// publisher's trace context, across the broker too, and each notify that
// delivers it is a span of the messaging semantic conventions: named
// "notify", kind client, the root of a trace of its own with a link to the
// publish's span (the publish call's server span, or the span in the ctx
// given to pubsub.Server.Publish), with the RPC attributes above and
//
//	messaging.system            "wsrpc"
//	messaging.operation.type    "send": the server hands the event on to a subscriber
//	messaging.operation.name    "notify"
//	messaging.destination.name  the topic
//
// The subscriber's handling of the notify is its child, as for any call.
// Set the same Propagator as cluster.Options.Trace for routed calls.
//
// # Metrics
//
//	rpc.server.call.duration  histogram, s: inbound calls, from acceptance to the answer being queued
//	rpc.client.call.duration  histogram, s: outbound calls, from the start to the answer or the failure
//
// Both have the attributes rpc.system.name and rpc.method, and on a
// failure rpc.response.status_code (for an error answer) and error.type,
// as on the spans; the buckets are the conventions' advice (5 ms to 10 s).
// Inbound methods are those registered (calls of others are refused
// before a handler runs, and are not measured: promwsrpc counts them), so
// the method values are bounded.
//
// Calls of methods whose name begins with '_' (the keep-alive "_ping_",
// "_get_channel_id_") are neither traced nor measured, unless
// [Options].Filter says otherwise.
//
// The package has no pub/sub metrics: promwsrpc's Metrics is the
// pubsub.Observer (wsrpc_pubsub_*, the broker's lag included).
package otelwsrpc
