// Package redisbroker is a [wsrpc.Broker] on Redis pub/sub, with go-redis:
// the nodes of a cluster share one Redis, and what one publishes on a
// channel (PUBLISH) reaches the subscribers of that channel on every node
// (SUBSCRIBE).
//
// It is byte-level, as wsrpc.Broker is. Given to a pubsub.Server as
// pubsub.Options.Broker, it carries the Python broadcaster's messages on
// channel pubsub.BrokerChannel ("EventNotifier"), so Go nodes and
// fastapi_websocket_pubsub nodes on one Redis hear each other:
//
//	b, err := redisbroker.Dial(ctx, "redis://127.0.0.1:6379/0", nil)
//	if err != nil { ... }
//	defer b.Close()
//	ps := pubsub.NewServer(&pubsub.Options{Broker: b})
//
// A Broker holds one pub/sub connection to Redis for all its
// subscriptions: a channel is subscribed in Redis while at least one of
// them wants it, and its subscriptions share it. One goroutine reads that
// connection and calls the subscriptions' functions in the order Redis
// sent the messages. PUBLISH goes through the client's pool.
//
// It keeps wsrpc.Broker's contract:
//   - At most once. A Broker made by [Dial] never retries a PUBLISH (go-redis
//     would, after a lost answer, and the message could arrive twice).
//   - Outages: the Broker watches its pub/sub connection (a read error, or
//     no answer to a ping for [Options].PingInterval). When it is lost, the
//     Broker tells its watchers (an error wrapping
//     [wsrpc.ErrBrokerUnavailable]), Publish and Subscribe fail at once
//     with such an error, and the messages published meanwhile are lost
//     to it. It reconnects with exponential backoff, subscribes every
//     channel again, and once Redis confirmed them all tells its watchers
//     (nil) and serves again. Nothing is buffered.
//   - Size: Publish refuses a message longer than [Options].MaxMessage
//     (DefaultMaxMessage, 4 MiB) with an error wrapping
//     [wsrpc.ErrBrokerMessageTooLarge]. Redis itself takes up to 512 MB,
//     but by default it disconnects a subscriber whose pending output
//     passes 32 MB (client-output-buffer-limit pubsub), so one huge
//     message can cut every node off. Messages that arrive are delivered
//     whatever their size.
package redisbroker
