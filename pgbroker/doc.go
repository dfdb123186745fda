// Package pgbroker is a [wsrpc.Broker] on PostgreSQL's LISTEN and
// NOTIFY, with pgx, for a cluster of wsrpc nodes that runs PostgreSQL and
// no other broker. Give it to pub/sub as [pubsub.Options].Broker:
//
//	b, err := pgbroker.New(ctx, "postgres://user:password@db:5432/app", nil)
//	if err != nil {
//		return err
//	}
//	defer b.Close()
//	ps := pubsub.NewServer(&pubsub.Options{Broker: b})
//
// Every node gets a Broker of its own on the same database. A [Broker]
// holds one connection for LISTEN and publishes with pg_notify through a
// pool (its own, or the application's: [Options].Pool).
//
// # Limits
//
// NOTIFY carries text shorter than 8000 bytes: a message of up to
// [MaxMessage] (7999) bytes of UTF-8 text goes as it is, any other
// message of up to [MaxBinaryMessage] (5998) bytes in base64. A larger
// one fails Publish with an error wrapping [wsrpc.ErrBrokerMessageTooLarge]
// and is not sent: nothing is cut, and nothing is carried another way.
// Pub/sub's envelope takes 77 bytes plus the topic (with the default
// NodeID, for a topic that JSON quotes without escapes), so an event's
// data may be up to 7922 bytes less the topic's length; above that,
// pubsub delivers it to the publishing node's subscribers only and
// answers the publisher with its code for an unavailable broker.
//
// Channel names longer than PostgreSQL's identifiers (63 bytes) are
// hashed: see [ChannelName].
//
// # Outages
//
// The Broker tells its watchers ([Broker.Watch], which pub/sub uses to log
// and report to its Observer) when the listening connection is lost and
// when it is back, with every channel LISTENed again; it reconnects by
// itself, with backoff. Meanwhile Publish fails with an error wrapping
// [wsrpc.ErrBrokerUnavailable] (the message is lost, and the publisher
// told) and subscriptions miss what other nodes publish: nothing is
// buffered or replayed.
//
// [pubsub.Options]: https://pkg.go.dev/github.com/wsrpc/wsrpc/pubsub#Options
package pgbroker
