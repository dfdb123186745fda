// Package promwsrpc exports the metrics of wsrpc servers and clients to
// Prometheus: a [Metrics] is a [wsrpc.Observer], which counts what the
// connections it watches do, and a [prometheus.Collector], which reports it.
//
//	m := promwsrpc.New(nil)
//	prometheus.MustRegister(m)
//	srv, err := wsrpc.NewServer(mux, &wsrpc.ServerOptions{
//		ConnOptions: wsrpc.ConnOptions{Observer: m},
//	})
//	...
//	http.Handle("/metrics", promhttp.Handler())
//
// The package is a module of its own, github.com/wsrpc/wsrpc/promwsrpc, so
// that a program that imports only wsrpc never downloads client_golang.
//
// # Server and client calls
//
// The call metrics follow go-grpc-middleware's names. "server" and
// "client" name the direction of a call, not the kind of the
// [wsrpc.Conn]: wsrpc_server_* count the calls that the peer made to this
// side (inbound, served by a handler here), wsrpc_client_* the calls that
// this side made to the peer (outbound). A server's callback to its client
// is a client call on the server, and a server call on the client.
//
//	wsrpc_server_started_total{method}        inbound calls accepted: their handler is about to run
//	wsrpc_server_handled_total{method,code}   inbound calls answered (or whose caller gave up), by code
//	wsrpc_server_handling_seconds{method}     histogram: from acceptance to the answer being queued
//	wsrpc_server_refused_total{method,reason} inbound calls answered without running a handler
//	wsrpc_client_started_total{method}        outbound calls started
//	wsrpc_client_handled_total{method,code}   outbound calls ended: answered, or failed, by code
//	wsrpc_client_handling_seconds{method}     histogram: from the start to the answer (or the failure)
//
// A refused call (an unknown method, one over MaxConcurrentCalls or
// MaxCallBytes, one during a shutdown) counts only in
// wsrpc_server_refused_total, never as started or handled; its reason is
// "method_not_found", "too_many_calls", "shutting_down" or "other". The
// caller counts it as a client call handled with code "MethodNotFound"
// or "ServerError".
//
// The code label is "OK" for a success. For an error answer it is the
// name of the JSON-RPC code for wsrpc's codes ([wsrpc.Code]):
// "ParseError", "InvalidRequest", "MethodNotFound", "InvalidParams",
// "InternalError", "ServerError", "Canceled"; for any other code, the
// number in decimal ("42", "-32001"). A handler's error that is not a
// *wsrpc.Error is sent, and counted, as "InternalError", except its
// context's error (the caller canceled, the deadline it sent passed, the
// connection ended), counted as "Canceled" or "DeadlineExceeded" as for
// an outbound call. An outbound call
// that got no answer has the name of what ended it: "DeadlineExceeded"
// (its context's deadline or CallTimeout), "Canceled" (its context was
// canceled), "ConnectionLost" ([wsrpc.ErrConnectionLost]), "Closed"
// ([wsrpc.ErrClosed]), "NotConnected" ([wsrpc.ErrNotConnected]), or
// "LocalError" for any other failure on this side, such as arguments that
// could not be encoded.
//
// # Connections and frames
//
//	wsrpc_connections_open                    gauge: connections up now
//	wsrpc_connections_opened_total            connections that came up
//	wsrpc_connections_closed_total{cause}     connections that ended, by cause
//	wsrpc_connect_tries_total{outcome}        a Client's connect tries, on Dial and on each reconnect
//	wsrpc_frames_received_total               data frames read
//	wsrpc_frames_sent_total                   data frames written
//	wsrpc_received_bytes_total                bytes of the data frames read
//	wsrpc_sent_bytes_total                    bytes of the data frames written
//	wsrpc_send_queue_frames                   gauge: frames waiting in the send queues
//	wsrpc_send_queue_bytes                    gauge: bytes of those frames
//	wsrpc_frames_dropped_total                frames given up on instead of written
//
// The cause of a closed connection is one of:
//   - "normal": the peer closed it with status 1000 (normal) or 1001
//     (going away, as a server that shuts down does);
//   - "closed": this side closed it (Close, Shutdown, Server.Close);
//   - "keepalive_timeout": the peer stayed silent too long
//     ([wsrpc.ErrKeepAliveTimeout]);
//   - "write_timeout": a write to the socket timed out (WriteTimeout: the
//     peer stopped reading);
//   - "message_too_big": the peer sent a frame over MaxMessageSize;
//   - "lost": the link dropped without a close handshake (end of stream,
//     reset);
//   - "peer_status": the peer closed it with any other status (1002,
//     1011, an application's 4000-4999);
//   - "error": anything else, such as an OnConnect hook's error.
//
// The outcome of a connect try is "ok", "http_error" (the server answered
// the upgrade with an HTTP status: 401, 403, 404, 503...),
// "handshake_timeout" ([wsrpc.ErrHandshakeTimeout]), "canceled" (the
// context of Dial or the Client ended), or "error" (the network or TLS
// failed). The cause and outcome series all exist from the start, at zero.
//
// # Cardinality
//
// Every label takes a bounded set of values. The method label of a
// refused call to an unknown method is "unknown", whatever the peer sent,
// as is an empty or invalid UTF-8 name; inbound calls that start have a
// registered method, and outbound ones the name the program chose.
// Beyond that, at most [Options].MaxMethods distinct names (1000 by
// default) get a label value of their own, in the order they are first
// seen, by either direction; calls of the names seen later count under
// "other". Error codes outside wsrpc's own are bounded the same way by
// MaxCodes (100 by default), since an outbound call's code is the peer's
// choice. A method actually named "other" or "unknown" shares those
// series. The remote URL, the connection and the topics are never labels.
//
// Each of the two handling-seconds histograms has one series per method
// label and bucket ([DefaultBuckets] has 16), so budget about
// 2 × 19 series per method.
//
// # Several servers and clients
//
// One Metrics may watch any number of servers and clients: each metric is
// their sum. To tell them apart, give each its own Metrics and register
// each with its own constant label:
//
//	prometheus.WrapRegistererWith(prometheus.Labels{"role": "gateway"}, reg).MustRegister(gw)
//	prometheus.WrapRegistererWith(prometheus.Labels{"role": "backend"}, reg).MustRegister(be)
//
// [prometheus.WrapRegistererWithPrefix] puts the metrics under another
// name.
//
// # Pub/sub
//
// A Metrics is a pubsub.Observer too (pubsub.Options.Observer):
//
//	wsrpc_pubsub_published_total              events published on this node or received from the broker, per topic
//	wsrpc_pubsub_queued_total                 those events times the local subscriptions they were queued for
//	wsrpc_pubsub_delivered_total{outcome}     notifies answered (ok, or error: the subscriber answered with one)
//	wsrpc_pubsub_dropped_total{reason}        events that did not reach a subscriber: slow_subscriber, subscriber_gone, failed
//	wsrpc_pubsub_slow_disconnects_total       subscribers the slow-subscriber policy closed
//	wsrpc_pubsub_broker_errors_total          broker failures: link lost, publish failed, message dropped
//	wsrpc_pubsub_broker_up                    gauge: 1 while subscribed to the broker, 0 while its link is down
//	wsrpc_pubsub_broker_lag_seconds           histogram: how long ago the events from the broker were published on another node
//
// The broker's lag is measured from the time the publishing node stamped
// on the event (a wsrpc node with a pubsub Observer or Trace stamps its
// broker messages; a Python node does not, and its events are not
// measured) to its arrival here, by this node's clock: the difference
// between the two nodes' clocks is in it, and a lag that comes out
// negative counts as 0. Keep the nodes' clocks synchronized (NTP) for it
// to mean something below a few milliseconds.
//
// Topics are not labels, since clients choose them, unless
// [Options].TopicLabels asks for them (with a cap, beyond which topics
// count as "other").
//
// # Cost
//
// The Observer methods allocate nothing, and take no lock on a call that
// succeeds once its method has been seen: counters and histograms are
// updated with atomic operations on series looked up once per method and
// direction (a call that fails also looks up its code's series, under
// client_golang's lock). The README gives the cost of a round
// trip with and without a Metrics on both sides (BenchmarkRoundTrip and
// BenchmarkRoundTripParallel in this package).
package promwsrpc
