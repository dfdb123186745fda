package pubsub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/internal/fanout"
)

// event is one event on one topic, shared by all its deliveries.
type event struct {
	topic     string
	topicJSON []byte
	data      json.RawMessage
	tail      []byte    // the notify's arguments after the subscription's head (notifyTail); nil without a connection to notify
	notifier  string    // the publisher's notifier id: it is not notified
	sync      *syncWait // nil unless the publisher waits
	// from is the connection whose publish without sync this is, if any:
	// its answer goes out before its own notify (as FWP's does), so the
	// notify is not sent at once but by the sender.
	from *wsrpc.Conn
	// ctx, with Options.Trace, is the Server's context carrying the
	// event's Publication (traced, withPublication): its notifies are
	// made, and its functions called, with it. Nil: with the Server's own.
	ctx context.Context
}

// life returns the context ev's notifies are made with.
func (ev *event) life(s *Server) context.Context {
	if ev.ctx != nil {
		return ev.ctx
	}
	return s.ctx
}

// notifyOverhead is what a notify frame adds to its topic and data, about:
// the envelope, the method, the ids. It counts against QueueBytes.
const notifyOverhead = 200

// size is what ev counts against a subscriber's QueueBytes.
func (ev *event) size() int64 { return int64(len(ev.data) + len(ev.topicJSON) + notifyOverhead) }

// subscription is one subscription of a subscriber to a topic.
type subscription struct {
	id    string
	topic string
	sub   *subscriber
	idx   int    // in the topic's list; Server.mu guards it
	head  []byte // its notifies' arguments up to the topic (notifyHead); nil for a server-side subscription
}

// delivery is an event queued for a subscriber, under one of its
// subscriptions.
type delivery struct {
	ev   *event
	head []byte // the subscription's head
}

// subscriber is a connection that subscribed (conn), or a server-side
// subscription (fn), with its queue: the events waiting to be sent, and
// the count of those sent and not answered yet. An event for a connection
// is sent at once by its publisher when nothing waits and the connection's
// send queue has room (no goroutine); otherwise it waits in the queue, and
// a sender goroutine runs while events wait, and only then: it sends them
// in order, many in flight at once, and exits when the queue is empty.
type subscriber struct {
	s    *Server
	id   string      // subscriber_id: the connection's id, or a random one
	conn *wsrpc.Conn // nil for a server-side subscription
	fn   Handler     // a server-side subscription's function
	subs []*subscription

	mu        sync.Mutex // guards the fields below
	queue     []delivery // waiting to be sent, from head on
	head      int
	held      int   // events queued or in flight (sent, not answered)
	heldBytes int64 // their size
	running   bool  // a sender goroutine runs
	closed    bool  // ended: nothing more is queued
}

// enqueue queues ev under sub, applying the slow policy if the queue is
// full. It reports whether ev was queued. Server.mu is read-held.
func (u *subscriber) enqueue(sub *subscription, ev *event) bool {
	s := u.s
	size := ev.size()
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return false
	}
	if u.held >= s.opts.QueueEvents || s.opts.QueueBytes > 0 && u.held > 0 && u.heldBytes+size > s.opts.QueueBytes {
		if u.conn == nil || s.opts.Slow == SlowDrop {
			u.mu.Unlock()
			s.drop(u, ev, ErrSlowSubscriber, false)
			return false
		}
		// SlowDisconnect: what waits is dropped, and a goroutine of its
		// own closes the connection (the sender may be stuck on its full
		// send queue).
		u.closed = true
		left := u.takeLocked()
		u.mu.Unlock()
		s.drop(u, ev, ErrSlowSubscriber, false)
		u.dropAll(left, ErrSlowSubscriber)
		s.wg.Go(u.closeSlow)
		return false
	}
	if ev.sync != nil {
		ev.sync.add()
	}
	u.held++
	u.heldBytes += size
	if u.conn != nil && !u.running && u.conn != ev.from {
		// Nothing waits (no sender runs): send it now if the connection
		// has room, still under u.mu, so that the next event follows it.
		sent, err := u.send(sub.head, ev, false)
		if sent || err != nil {
			u.mu.Unlock()
			if err != nil {
				u.finish(ev, err)
			}
			return true
		}
	}
	u.queue = append(u.queue, delivery{ev, sub.head})
	start := !u.running
	u.running = true
	u.mu.Unlock()
	if start {
		s.wg.Go(u.run)
	}
	return true
}

// takeLocked takes the deliveries still waiting, and uncounts them; u.mu
// held.
func (u *subscriber) takeLocked() []delivery {
	left := u.queue[u.head:]
	u.queue, u.head = nil, 0
	for _, d := range left {
		u.held--
		u.heldBytes -= d.ev.size()
	}
	return left
}

// end stops u: nothing more is queued, and what waits is dropped.
func (u *subscriber) end(reason error) {
	u.mu.Lock()
	u.closed = true
	left := u.takeLocked()
	u.mu.Unlock()
	u.dropAll(left, reason)
}

// dropAll drops deliveries taken off the queue.
func (u *subscriber) dropAll(left []delivery, reason error) {
	for _, d := range left {
		u.s.drop(u, d.ev, reason, true)
	}
}

// drop gives up on ev for u: it is counted and reported, and if it was
// queued, a sync publisher stops waiting for it.
func (s *Server) drop(u *subscriber, ev *event, reason error, queued bool) {
	if queued && ev.sync != nil {
		ev.sync.release()
	}
	s.dropped.Add(1)
	s.obs.Dropped(u.conn, ev.topic, reason)
	s.log.Debug("pubsub: event dropped", "subscriber", u.id, "topic", ev.topic, "reason", reason)
}

// run is the sender: it sends the queued events in order until none is
// left.
func (u *subscriber) run() {
	for {
		u.mu.Lock()
		if u.head == len(u.queue) {
			u.running = false
			if cap(u.queue) > 16 {
				u.queue = nil // an idle subscriber keeps little
			} else {
				u.queue = u.queue[:0]
			}
			u.head = 0
			u.mu.Unlock()
			return
		}
		d := u.queue[u.head]
		u.queue[u.head] = delivery{}
		u.head++
		u.mu.Unlock()
		if u.conn == nil {
			u.finish(d.ev, u.call(d.ev))
			continue
		}
		if _, err := u.send(d.head, d.ev, true); err != nil {
			u.finish(d.ev, err) // not sent
		}
	}
}

// call runs a server-side subscription's function on ev.
func (u *subscriber) call(ev *event) (err error) {
	defer func() {
		if p := recover(); p != nil {
			u.s.log.Error("pubsub: subscription function panicked", "topic", ev.topic, "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("pubsub: subscription function panicked: %v", p)
		}
	}()
	u.mu.Lock()
	closed := u.closed
	u.mu.Unlock()
	if closed {
		return ErrSubscriberGone
	}
	return u.fn(ev.life(u.s), Event{Topic: ev.topic, Data: ev.data})
}

// finish counts a delivery as done: answered (err nil or the answer's
// error) or failed.
func (u *subscriber) finish(ev *event, err error) {
	s := u.s
	u.mu.Lock()
	u.held--
	u.heldBytes -= ev.size()
	u.mu.Unlock()
	if ev.sync != nil {
		ev.sync.release()
	}
	if err != nil && !isAnswer(err) && u.conn != nil {
		s.dropped.Add(1)
		s.obs.Dropped(u.conn, ev.topic, err)
		s.log.Debug("pubsub: notify failed", "subscriber", u.id, "topic", ev.topic, "err", err)
		return
	}
	switch {
	case err != nil && u.conn == nil:
		s.log.Warn("pubsub: subscription function failed", "topic", ev.topic, "err", err)
	case err != nil:
		s.log.Debug("pubsub: subscriber answered its notify with an error", "subscriber", u.id, "topic", ev.topic, "err", err)
	}
	s.delivered.Add(1)
	s.obs.Delivered(u.conn, ev.topic, err)
}

// NotifyDone is fanout.Done: a notify of ev (an *event) that send sent
// has its outcome.
func (u *subscriber) NotifyDone(ev any, err error) {
	u.finish(ev.(*event), err)
	u.s.inflight.Done()
}

// isAnswer reports whether a notify's error is the subscriber's answer (it
// got the event and failed it), not a failure to deliver.
func isAnswer(err error) bool {
	_, ok := errors.AsType[*wsrpc.Error](err)
	return ok
}

// closeSlow closes a slow subscriber's connection.
func (u *subscriber) closeSlow() {
	s := u.s
	s.slowDisconnects.Add(1)
	s.log.Warn("pubsub: slow subscriber disconnected: its queue is full",
		"conn", u.id, "remote", u.conn.RemoteAddr().String(), "queue_events", s.opts.QueueEvents, "queue_bytes", s.opts.QueueBytes)
	s.obs.SlowDisconnect(u.conn)
	u.conn.CloseWith(CloseSlowSubscriber, "slow subscriber: notify queue full")
}

// send sends ev to u's connection as a notify under the subscription
// whose head is given, the one place that sends notifies. It does not wait
// for the answer (as [wsrpc.Conn.Go]): the notifies of one subscriber go
// out in order, many in flight, and the connection's reader hands each
// answer to finish. With wait it blocks while the connection's send queue
// is full (a subscriber that does not read), until the connection or the
// Server ends; without, it reports sent false then, having done nothing.
// An error means not sent: finish is the caller's to call.
//
// The arguments go through internal/fanout: spliced into the frame as
// notifyHead and notifyTail built them, and the Server's context is
// watched once per connection, for every notify (an event's own context,
// with Options.Trace, made from the Server's with values only, is for the
// connection's Observer).
func (u *subscriber) send(head []byte, ev *event, wait bool) (sent bool, err error) {
	s := u.s
	s.inflight.Add(1)
	sent, err = fanout.Notify(u.conn, s.ctx, ev.life(s), "notify", head, ev.tail, wait, u, ev)
	if !sent {
		s.inflight.Done()
	}
	return sent, err
}
