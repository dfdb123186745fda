// Package wsrpc is bidirectional RPC over WebSockets, wire-compatible with
// the Python library fastapi_websocket_rpc.
//
// Both ends of a connection expose methods that the other end can call and
// wait for. Calls run concurrently both ways on one connection, nest (a
// handler may call back its caller while the caller waits), carry keyword
// arguments and structured results, time out, and fail with errors a caller
// can inspect, never by killing the connection.
//
// # Servers
//
// A [Server] is an http.Handler; mount it on any router:
//
//	mux := wsrpc.NewMux()
//	wsrpc.Register(mux, "concat", func(ctx context.Context, a struct{ A, B string }) (string, error) {
//		return a.A + a.B, nil
//	})
//	srv, err := wsrpc.NewServer(mux, nil)
//	if err != nil {
//		log.Fatal(err) // invalid options
//	}
//	http.Handle("/ws/{client_id}", srv)
//
// [ServerOptions] has the authentication hook that runs before the upgrade
// and the Origin check (on by default); the [ConnOptions] it embeds, which
// [DialOptions] embeds too, has the connection hooks, keep-alive and limits
// of either side.
// [Server.Shutdown] drains calls in flight and closes every connection with
// a close frame.
//
// # Clients
//
// [Dial] connects, retrying with jittered exponential backoff (401, 403,
// certificate failures and, on the first connect, a URL that is no
// WebSocket endpoint are final), and returns a [Client] that reconnects
// whenever the link drops, runs OnConnect on each new connection, keeps the
// link alive with pings, and exposes [DialOptions].Methods to the server.
// HTTP(S) proxies come from the environment by default. The library logs
// its routine events at Debug only.
//
// # Calls and errors
//
// [Conn.Call], [Client.Call] and the generic [Call] take a context, a method
// name, keyword arguments (a struct, a map or a JSON object) and a result to
// decode into. A context without a deadline gets the default call timeout.
// Errors are values: an *[Error] (a JSON-RPC [Code], message, data) when
// the peer answered with one, the context's error on timeout, [ErrClosed]
// and [ErrConnectionLost] when the connection ended. Test them with
// [errors.Is] and [errors.As]: a peer's refusal matches [ErrShuttingDown]
// or [ErrTooManyCalls] where it arrives, and [ErrorCode] gives any error's
// code. An error's text says "wsrpc: " once, in front: "wsrpc: call
// "echo": remote error -32000 (server error): too many calls in flight".
// A Client retries a call only when [Client.CallWith] says that it is
// idempotent ([CallOptions]).
//
// [Conn.Go] and [Client.Go] make a call without waiting for its answer:
// they queue the request and return, and a function of the caller's gets
// the outcome, a [Reply], from the connection's reader. A call in flight
// costs no goroutine, and the calls one goroutine makes reach the peer in
// order, so a program can push thousands of notifications at once.
//
// Handlers are registered on a [Mux]: [Register] gives typed keyword
// arguments (a struct whose fields are the arguments) and a typed result;
// [Mux.Handle] takes raw JSON. Missing, unknown or mistyped arguments are
// answered with [CodeInvalidParams], unknown methods with
// [CodeMethodNotFound], a handler's panic with [CodeInternalError] (and a
// [*PanicError] to the OnError hook); the connection lives on. An argument
// of type [RawText] borrows a large string from its frame instead of
// copying it, for handlers that read it at once. [RegisterUtilities] adds
// the Python library's utility methods. [Mux.HandleOrdered] registers a
// method whose calls on one connection run one at a time, in arrival
// order (pub/sub's notify).
//
// Package pubsub, built on this package's API, is publish/subscribe
// compatible with fastapi_websocket_pubsub; nodes share its events
// through a [Broker], and trace context across it with a
// [TracePropagator], as package cluster's routed calls do.
//
// # Concurrency
//
// Each connection has one reader, which never runs handlers itself: every
// call runs in its own goroutine, so a slow handler blocks nothing and nested
// calls cannot deadlock; it hands the answers to calls made with Go to
// their done functions, which must therefore be quick. One writer at a
// time, started when frames are queued (or run by a handler whose answer
// finds no writer running), drains a bounded send queue. Handlers and writers run on the workers of
// the Server or Client that owns the connection; the connection counts them
// and waits for them before it reports Done. A Server also runs one
// keep-alive goroutine for all its connections, a Client one reconnect
// loop. Each Conn's lock guards its lifecycle and inbound accounting; the
// send queue and the pending calls have locks of their own. Limits per connection
// ([ConnOptions].MaxConcurrentCalls, MaxCallBytes, MaxMessageSize,
// SendQueue, SendQueueBytes) bound what one peer can make the other hold:
// about MaxMessageSize + MaxCallBytes + SendQueueBytes. A handler's context
// carries its connection ([ConnFromContext]) and ends when the connection
// ends. Close methods are idempotent and safe to call from handlers and
// hooks; [Server.Close], [Server.Shutdown] and [Client.Close] return once
// the goroutines they own have returned, OnDisconnect included (see each
// for the bound).
//
// # Python interoperability
//
// wsrpc speaks fastapi_websocket_rpc's JSON envelope unchanged (see
// PROTOCOL.md), answers its built-ins _ping_ and _get_channel_id_, names
// result types as it does ("str", "int", "float", "bool", "List", a struct's
// name), and uses its call id form. Error responses add an "error" key that
// Python peers ignore. Two wsrpc peers also negotiate, through the WebSocket
// subprotocol "wsrpc.v1", an extension that carries the caller's deadline
// with each call and cancels the remote handler when the caller gives up;
// a Python peer never sees it. A request may also carry the caller's W3C
// trace context, which an [Observer] sets and reads ([CallInfo].TraceParent;
// package otelwsrpc does it).
package wsrpc
