package pubsub

import (
	"time"

	"github.com/wsrpc/wsrpc"
)

// Observer watches a [Server]'s deliveries, for metrics and logs: set one
// in [Options]. Nil means off. Embed [NopObserver] to implement only some
// of the methods. (The connections themselves are watched by the
// wsrpc.Observer of the wsrpc.Server.)
//
// The methods are called synchronously, from publishers, from the
// connections' readers and from the Server's senders, concurrently, some
// with the Server's index locked. They must return quickly, must not
// block, and must not call the Server.
type Observer interface {
	// Published is called once per event and topic published on this node,
	// by a client, by the application, or from the broker, with the
	// number of local subscriptions it was queued for.
	Published(topic string, subscriptions int)
	// Delivered is called once per notify a subscriber answered, or per
	// call of a server-side subscription's function; err is the answer's
	// error, if any (the event was delivered all the same).
	Delivered(c *wsrpc.Conn, topic string, err error)
	// Dropped is called for each event that did not reach a subscriber:
	// its queue was full ([ErrSlowSubscriber]), its connection ended
	// first, or its notify failed (timed out, the connection was lost).
	// A notify that timed out was sent, and may still reach the
	// subscriber's handler if the cancel that follows it comes too late
	// (at most once, in order). c is nil for a server-side subscription.
	Dropped(c *wsrpc.Conn, topic string, reason error)
	// SlowDisconnect is called when the SlowDisconnect policy closes a
	// subscriber's connection (status [CloseSlowSubscriber]).
	SlowDisconnect(c *wsrpc.Conn)
	// Broker is called when the broker fails: err wraps
	// wsrpc.ErrBrokerUnavailable when the link to it is lost or a
	// publish to it failed, or is the reason a message from it was
	// dropped (not an envelope). It is called with nil once the Server
	// is subscribed to the broker: at first, and after each outage the
	// broker reports (wsrpc.BrokerWatcher).
	Broker(err error)
	// BrokerLag is called for each event and topic that arrives from the
	// broker stamped with the time another node published it (a wsrpc
	// node with an Observer or [Options].Trace stamps its messages; a
	// Python node does not, and its events are not measured), with how
	// long ago that was by this node's clock: the broker's lag, plus the
	// difference between the two nodes' clocks. A lag that comes out
	// negative (this node's clock is behind) is reported as 0.
	BrokerLag(topic string, lag time.Duration)
}

// NopObserver implements every [Observer] method as doing nothing.
type NopObserver struct{}

// Published does nothing.
func (NopObserver) Published(string, int) {}

// Delivered does nothing.
func (NopObserver) Delivered(*wsrpc.Conn, string, error) {}

// Dropped does nothing.
func (NopObserver) Dropped(*wsrpc.Conn, string, error) {}

// SlowDisconnect does nothing.
func (NopObserver) SlowDisconnect(*wsrpc.Conn) {}

// Broker does nothing.
func (NopObserver) Broker(error) {}

// BrokerLag does nothing.
func (NopObserver) BrokerLag(string, time.Duration) {}
