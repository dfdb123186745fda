// Package pubsub is publish/subscribe over wsrpc, wire-compatible with the
// Python library fastapi_websocket_pubsub (FWP): a Python PubSubClient
// works against a [Server] unchanged, and a [Client] against a Python
// PubSubEndpoint. It is built on wsrpc's public API alone.
//
// A [Server] adds FWP's methods (subscribe, unsubscribe, publish, ping) to
// a wsrpc.Mux and delivers each event by calling the subscriber's notify
// method with {"subscription": {"id", "subscriber_id", "topic",
// "notifier_id": null}, "data"}:
//
//	ps := pubsub.NewServer(nil)
//	defer ps.Close()
//	mux := wsrpc.NewMux()
//	srv, _ := wsrpc.NewServer(mux, nil)
//	ps.Register(srv, mux)
//	http.Handle("/pubsub", srv)
//	ps.Publish(ctx, []string{"orders"}, order) // from application code
//
// A [Client] subscribes handlers to topics and publishes:
//
//	cl, _ := pubsub.Dial(ctx, "ws://host/pubsub", nil)
//	cl.Subscribe(ctx, "orders", pubsub.Typed(func(ctx context.Context, topic string, o Order) error { … }))
//	cl.Publish(ctx, []string{"orders"}, order)
//
// # Delivery
//
// An event reaches each subscription at most once: nothing is redelivered
// (a subscriber that reconnects gets the events published from then on).
// For each subscriber, the events of one topic from one publisher arrive in
// the order they were published: the Server queues the events of one
// connection's publishes in the order the publishes arrived, even when the
// client sends them without waiting for the answers (publish is an ordered
// method; a sync publish lets the next one start before it waits, with
// [wsrpc.PassTurn]), it queues a subscriber's events in order and sends
// them in order, and a Client's handler gets the events of
// its subscription one at a time, in that order, though wsrpc runs
// handlers concurrently (its notifies are [wsrpc.Mux.HandleOrdered]). A
// connection does not get its own publications, unless it publishes with
// a notifier id not its own (FWP's rule). [AllTopics] subscribes to every
// topic.
//
// # No head-of-line blocking
//
// Publishing never waits for a subscriber: it queues the event for each
// subscriber, in that subscriber's own queue, and returns. Each subscriber
// with events waiting has one sender goroutine (none when its queue is
// empty), which sends its notifies one after another without waiting for
// the answers, many in flight at once. One subscriber that stops answering
// or reading delays neither the publisher nor any other subscriber.
//
// # Slow subscribers
//
// A subscriber's queue holds its events waiting to be sent and those sent
// but not answered yet, bounded in events ([Options].QueueEvents, 1024)
// and in bytes (QueueBytes, 1 MiB). When an event finds it full, the
// policy ([Options].Slow) applies: [SlowDisconnect], the default, closes
// the subscriber's connection with status [CloseSlowSubscriber] (4008,
// reason "slow subscriber"), its client reconnects and subscribes again;
// [SlowDrop] drops the event and counts it. Both are logged, counted in
// [Server.Stats] and told to the [Observer]. Memory per subscriber is so
// bounded by the queue and the connection's own send queue.
//
// # Sync
//
// publish with sync (FWP's default) is answered once every local
// subscriber took the event (answered its notify, or its function
// returned) or was given up on (the slow policy, its connection ended, its
// notify failed), and at the latest after [Options].SyncTimeout (5 s):
// never forever, and never deadlocked when the publisher is itself a
// subscriber. Without sync it is answered at once, and the notifies go
// out independently of that answer: a publisher that subscribes to the
// topic may get its own notify before the answer (FWP's comes after it).
//
// # Authorization
//
// [Options].Authorize may refuse a subscribe or a publish per connection
// and topic; the client gets an error answer with [CodeForbidden], which a
// Client's error matches as [ErrForbidden].
//
// # Several nodes
//
// A [wsrpc.Broker] carries events between nodes in the Python
// broadcaster's format (channel [BrokerChannel], one message
// {"notifier_id", "topics": [topic], "data"} per topic; a node ignores its
// own). A node always delivers to its own subscribers itself; the broker
// brings it the others' events. Nil means a [MemoryBroker] of the node's
// own: a single node needs nothing else.
//
// A node with an [Observer] or [Options].Trace adds a member of its own to
// its messages, last: "wsrpc": {"time_ns", "traceparent", "tracestate"}
// (when it published the event, in Unix nanoseconds by its clock, and the
// publisher's W3C trace context, each there only if known). A Python node
// ignores it, and delivers the event as without it (checked by hand,
// testdata/envelope-vectors.jsonl); a node with neither sends exactly the
// Python broadcaster's message.
//
// # Tracing and the broker's lag
//
// With [Options].Trace (otelwsrpc.Propagator, for OpenTelemetry), each
// event carries its publisher's trace context: the span of the publish
// call, or the one in the ctx given to [Server.Publish]. Its notifies, on
// this node and on the others, are made with a context that carries its
// [Publication] ([PublicationFromContext]), which the connections'
// wsrpc.Observer reads: otelwsrpc's makes each notify a span of the
// messaging conventions, linked to the publish's span, and the
// subscriber's handling of the notify is that span's child.
//
// A node with an Observer that receives a stamped event from the broker
// reports how long ago it was published ([Observer].BrokerLag): the
// broker's lag, plus the difference between the two nodes' clocks (a lag
// that comes out negative counts as 0). Events from Python nodes are not
// stamped, and not measured.
package pubsub
