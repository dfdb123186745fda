package wsrpc

import "context"

// Broker carries messages between the nodes of a cluster: what one node
// publishes on a channel reaches the subscribers of that channel on every
// node, the publishing one included. It is byte-level: a message is opaque
// to it. Package pubsub puts the Python broadcaster's envelope in the
// messages, so that the adapters (redisbroker, natsbroker, pgbroker) and
// pubsub.MemoryBroker carry the same bytes.
//
// The contract, which every implementation states and keeps:
//   - At most once: a message reaches each subscription once or, if the
//     link to the broker fails, not at all. Nothing is redelivered.
//   - Ordered per channel: the messages one node publishes on a channel,
//     one Publish after another, reach each subscription in that order.
//   - fn is called for one subscription one message at a time, and must
//     return quickly: a slow fn delays that subscription's messages. It
//     may keep msg, and must not modify it.
//   - Outages: while the link to the broker's server is down, Publish
//     fails with an error wrapping [ErrBrokerUnavailable] (the message is
//     lost, and the publisher knows), subscriptions miss what is published
//     meanwhile, and the Broker reconnects and re-subscribes by itself. A
//     Broker that can go down implements [BrokerWatcher] to say so.
//   - Size: a message larger than the broker carries fails Publish with an
//     error wrapping [ErrBrokerMessageTooLarge]; none is cut or dropped
//     silently.
//
// A Broker is safe for concurrent use. Its creator closes it.
type Broker interface {
	// Publish sends msg on channel, bounded by ctx. It returns once the
	// broker took the message, not once subscribers got it. It does not
	// keep msg.
	Publish(ctx context.Context, channel string, msg []byte) error
	// Subscribe calls fn with every message published on channel from
	// the time it returns until stop is called; a message published
	// just before may come too (one still on its way to a subscription
	// of the same channel that this one joins). ctx bounds only the
	// subscribing. Once stop returned, fn is not called again; stop must
	// not be called from fn.
	Subscribe(ctx context.Context, channel string, fn func(msg []byte)) (stop func(), err error)
}

// BrokerWatcher is implemented by a [Broker] whose link to its server can
// go down: Watch registers fn, called one call at a time with the error
// when the link is lost, and with nil once it is back and every
// subscription restored. pubsub logs both and tells its Observer. Calling
// stop unregisters fn.
type BrokerWatcher interface {
	Watch(fn func(err error)) (stop func())
}

// Errors a [Broker] returns, wrapped; test for them with [errors.Is].
var (
	// ErrBrokerUnavailable: the broker cannot be reached now; what was
	// published is lost.
	ErrBrokerUnavailable error = &sentinelError{msg: "broker unavailable"}
	// ErrBrokerMessageTooLarge: the message is larger than the broker
	// carries (PostgreSQL's NOTIFY: 8000 bytes); it was not sent.
	ErrBrokerMessageTooLarge error = &sentinelError{msg: "message too large for the broker"}
)
