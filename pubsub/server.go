package pubsub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsrpc/wsrpc"
)

// AllTopics is the topic that subscribes to every topic, as FWP names it:
// each notify carries the event's real topic.
const AllTopics = "__EventNotifier_ALL_TOPICS__"

// BrokerChannel is the broker channel that the nodes share, as the Python
// broadcaster names it.
const BrokerChannel = "EventNotifier"

// CloseSlowSubscriber is the WebSocket close status with which the
// SlowDisconnect policy closes a subscriber whose queue is full (from the
// range for applications' own codes, as centrifuge's "slow" disconnect).
// The close reason says "slow subscriber".
const CloseSlowSubscriber = 4008

// Error codes of pub/sub's answers, besides the core's ([wsrpc.Code]).
const (
	// CodeForbidden answers a subscribe or publish that the Authorize hook
	// refused; the message names the action and the topic.
	CodeForbidden wsrpc.Code = 403
	// CodeBrokerUnavailable answers a publish that reached this node's
	// subscribers but not the broker (and so no other node).
	CodeBrokerUnavailable wsrpc.Code = 503
	// CodeEventTooLarge answers a publish that reached this node's
	// subscribers but that the broker refused as larger than it carries
	// (wsrpc.ErrBrokerMessageTooLarge: PostgreSQL's NOTIFY takes 8000
	// bytes), so no other node got it. Publishing it again will not help.
	CodeEventTooLarge wsrpc.Code = 413
)

// Errors of this package. Test for them with [errors.Is].
var (
	// ErrForbidden is matched by the error a [Client]'s Subscribe or
	// Publish returns when the server refused it ([CodeForbidden]).
	ErrForbidden = errors.New("pubsub: forbidden")
	// ErrSlowSubscriber is the reason an event was dropped for a
	// subscriber whose queue was full.
	ErrSlowSubscriber = errors.New("pubsub: slow subscriber: queue full")
	// ErrSubscriberGone is the reason an event was dropped for a
	// subscriber that went away with the event still queued.
	ErrSubscriberGone = errors.New("pubsub: subscriber gone")
	// ErrClosed is returned by a Server's or a Client's methods once it
	// was closed.
	ErrClosed = errors.New("pubsub: closed")
)

// Defaults for [Options].
const (
	DefaultQueueEvents = 1024
	DefaultQueueBytes  = 1 << 20
	DefaultSyncTimeout = 5 * time.Second
)

// SlowPolicy is what a [Server] does with an event for a subscriber whose
// queue is full.
type SlowPolicy int8

// The policies.
const (
	// SlowDisconnect drops the event and closes the subscriber's
	// connection with [CloseSlowSubscriber], dropping what it had queued:
	// its client reconnects and subscribes again (wsrpc's and FWP's
	// clients do). The default.
	SlowDisconnect SlowPolicy = iota
	// SlowDrop drops the event, counts it (Stats.Dropped) and tells the
	// Observer; the subscriber stays, and gets the events that find room.
	SlowDrop
)

// String names the policy: "disconnect" or "drop".
func (p SlowPolicy) String() string {
	switch p {
	case SlowDisconnect:
		return "disconnect"
	case SlowDrop:
		return "drop"
	}
	return "unknown"
}

// Action is what a client asks the [Options].Authorize hook for.
type Action int8

// The actions.
const (
	ActionSubscribe Action = iota + 1 // a client's subscribe, per topic
	ActionPublish                     // a client's publish, per topic
)

// String names the action: "subscribe" or "publish".
func (a Action) String() string {
	switch a {
	case ActionSubscribe:
		return "subscribe"
	case ActionPublish:
		return "publish"
	}
	return "unknown"
}

// Options configures a [Server]. A nil *Options, and every zero field,
// means the documented default.
type Options struct {
	// Broker carries events to the other nodes, and theirs here, in the
	// Python broadcaster's format on [BrokerChannel]. Nil means a
	// [MemoryBroker] of the Server's own, which no other node shares:
	// the node is alone, and nothing is sent anywhere.
	Broker wsrpc.Broker
	// NodeID is this node's notifier id on the broker, by which it
	// recognizes its own messages. Empty means 32 random hex digits.
	NodeID string

	// Authorize, if set, is asked before a client subscribes to or
	// publishes on a topic (once per topic of the call; AllTopics is
	// asked as itself). An error refuses the whole call, subscribing or
	// publishing nothing: a *wsrpc.Error is sent as it is, any other
	// error as [CodeForbidden] with the message `forbidden: ACTION
	// "TOPIC"` (its text goes only to the log, at Debug).
	Authorize func(ctx context.Context, c *wsrpc.Conn, action Action, topic string) error

	// QueueEvents bounds the events queued for one subscriber, those
	// sent but not answered yet included (a notify unanswered after the
	// connection's CallTimeout, 30 s by default, fails and leaves the
	// queue). Zero means DefaultQueueEvents (1024).
	QueueEvents int
	// QueueBytes bounds the bytes of those events (their data and topic,
	// plus a notify's overhead); an event always fits in an empty queue.
	// Zero means DefaultQueueBytes (1 MiB); negative: no limit but
	// QueueEvents.
	QueueBytes int64
	// Slow is what happens to an event for a subscriber whose queue is
	// full. The default is SlowDisconnect. A server-side subscription
	// ([Server.Subscribe]) always drops.
	Slow SlowPolicy
	// SyncTimeout bounds how long a publish with sync waits for the
	// subscribers to take the event; then it is answered all the same.
	// Zero means DefaultSyncTimeout (5 s).
	SyncTimeout time.Duration

	// Logger receives the Server's logs. Nil means slog.Default().
	// Warn: a slow subscriber disconnected, the broker failing or back;
	// Error: a server-side subscription's function panicked; Debug:
	// events dropped, refusals of the Authorize hook.
	Logger *slog.Logger
	// Observer, if set, watches deliveries; see [Observer]. With an
	// Observer, the node stamps its broker messages with the time of
	// publishing (the envelope's "wsrpc" member), by which the other
	// nodes' Observers measure the broker's lag (Observer.BrokerLag).
	Observer Observer
	// Trace, if not nil, carries each event's trace context
	// (otelwsrpc.Propagator is one). A publish takes its publisher's
	// from its ctx (Inject: the publish call's span, or the span in the
	// ctx given to [Server.Publish]), once per publish, and passes it on
	// in its broker messages (the "wsrpc" member, with the time, which the
	// Python nodes ignore), so that the other wsrpc nodes have it too. The
	// notifies of the event are made, and its server-side subscriptions'
	// functions called, with a context of the Server's that carries the
	// event's [Publication] ([PublicationFromContext]) and the publisher's
	// span context (Extract, once per event and node): otelwsrpc's Observer
	// starts each notify's span linked to the publish's span, and the
	// subscriber's handling of the notify is a child of that span. Nil:
	// notifies are made as any call, with no link.
	//
	// Set it together with a wsrpc.Observer on the connections, which is
	// what reads the Publication; without one it costs an Extract per
	// event and a context value per event and topic on each node, and
	// nothing per notify. Extract should return the context it is given
	// with values added (context.WithValue): one that may end before it
	// costs each notify a context.AfterFunc of its own, and one not made
	// from it leaves the notifies to their call timeout when the Server
	// closes.
	Trace wsrpc.TracePropagator
}

// Server is pub/sub on a [wsrpc.Server], wire-compatible with
// fastapi_websocket_pubsub's PubSubEndpoint: its clients call subscribe,
// unsubscribe, publish and ping, and it delivers each event by calling the
// subscribers' notify. Application code publishes with [Server.Publish]
// and subscribes functions with [Server.Subscribe].
//
// A Server is safe for concurrent use. Close stops it.
type Server struct {
	opts      Options // the defaults filled in; Broker nil: the node is alone
	log       *slog.Logger
	obs       Observer
	nodeJSON  []byte
	ownPrefix []byte // how this node's own broker messages begin
	stamp     bool   // a Broker, and an Observer or Trace: broker messages carry the "wsrpc" member

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the senders and the broker's joiner
	// inflight counts the notifies sent and not answered: Close waits
	// for them (its end of ctx completes them), so that nothing is
	// reported after it returned.
	inflight sync.WaitGroup

	// mu guards the index: the fields below, and subscriber.subs and
	// subscription.idx.
	mu     sync.RWMutex
	topics map[string]*topicSubs
	conns  map[*wsrpc.Conn]*subscriber
	funcs  map[*subscriber]struct{} // server-side subscriptions
	closed bool

	bmu        sync.Mutex // guards the broker subscription
	stopBroker func()
	stopWatch  func()

	published, delivered, dropped, slowDisconnects atomic.Uint64
}

// topicSubs are the subscriptions to one topic, in no order.
type topicSubs struct{ list []*subscription }

// NewServer returns a pub/sub Server; mount it on a wsrpc.Server with
// [Server.Register]. It does no I/O: with a Broker other than a
// MemoryBroker it subscribes to the broker in the background, retrying
// with backoff, and tells the Observer (Broker(nil)) once it has; until
// then the node serves its own subscribers only. It panics if opts are
// invalid.
func NewServer(opts *Options) *Server {
	var o Options
	if opts != nil {
		o = *opts
	}
	var errs []error
	if o.QueueEvents < 0 {
		errs = append(errs, errors.New("pubsub: QueueEvents must not be negative"))
	}
	if o.SyncTimeout < 0 {
		errs = append(errs, errors.New("pubsub: SyncTimeout must not be negative: a sync publish is always bounded"))
	}
	if o.Slow != SlowDisconnect && o.Slow != SlowDrop {
		errs = append(errs, fmt.Errorf("pubsub: unknown SlowPolicy %d", o.Slow))
	}
	if err := errors.Join(errs...); err != nil {
		panic(err)
	}
	if o.QueueEvents == 0 {
		o.QueueEvents = DefaultQueueEvents
	}
	switch {
	case o.QueueBytes == 0:
		o.QueueBytes = DefaultQueueBytes
	case o.QueueBytes < 0:
		o.QueueBytes = 0
	}
	if o.SyncTimeout == 0 {
		o.SyncTimeout = DefaultSyncTimeout
	}
	if o.NodeID == "" {
		o.NodeID = newID()
	}
	s := &Server{
		opts:   o,
		log:    o.Logger,
		obs:    o.Observer,
		topics: make(map[string]*topicSubs),
		conns:  make(map[*wsrpc.Conn]*subscriber),
		funcs:  make(map[*subscriber]struct{}),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.obs == nil {
		s.obs = NopObserver{}
	}
	s.stamp = o.Broker != nil && (o.Observer != nil || o.Trace != nil)
	s.nodeJSON = quote(s.opts.NodeID)
	s.ownPrefix = append([]byte(`{"notifier_id": `), s.nodeJSON...)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if s.opts.Broker != nil {
		s.joinBroker()
	}
	return s
}

// Register adds the pub/sub methods to mux, which srv serves (mux may
// also hold other methods, and may be in use already), and makes srv drop
// each connection's subscriptions when it ends. The methods are FWP's:
//
//   - subscribe(topics) → true: one subscription per topic (subscribing
//     twice delivers twice); topics is a list of strings or one string;
//     none subscribes to nothing.
//   - unsubscribe(topics) → true: drops the connection's subscriptions to
//     those topics, if any.
//   - publish(topics, data=null, sync=true, notifier_id=null) → true:
//     notifies every subscriber of each topic but the publisher itself
//     (notifier_id null means the publishing connection), unless
//     notifier_id names another.
//   - ping() → "pong".
func (s *Server) Register(srv *wsrpc.Server, mux *wsrpc.Mux) {
	mux.HandleFunc("subscribe", s.handleSubscribe)
	mux.HandleFunc("unsubscribe", s.handleUnsubscribe)
	// Ordered: the publishes of one connection queue their events in the
	// order they arrived (handlePublish passes its turn on before a sync
	// publish waits).
	mux.HandleOrdered("publish", wsrpc.HandlerFunc(s.handlePublish))
	mux.HandleFunc("ping", func(context.Context, json.RawMessage) (any, error) { return "pong", nil })
	srv.RegisterOnDisconnect(func(c *wsrpc.Conn, _ error) { s.dropConn(c) })
}

// NodeID returns the node's notifier id on the broker.
func (s *Server) NodeID() string { return s.opts.NodeID }

func (s *Server) handleSubscribe(ctx context.Context, raw json.RawMessage) (any, error) {
	var a topicsArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	c := wsrpc.ConnFromContext(ctx)
	if err := s.authorize(ctx, c, ActionSubscribe, a.Topics); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, wsrpc.ErrShuttingDown
	}
	if len(a.Topics) == 0 {
		return true, nil
	}
	u := s.conns[c]
	if u == nil {
		u = &subscriber{s: s, id: c.ID(), conn: c}
		s.conns[c] = u
	}
	for _, t := range a.Topics {
		s.addLocked(u, t)
	}
	return true, nil
}

func (s *Server) handleUnsubscribe(ctx context.Context, raw json.RawMessage) (any, error) {
	var a topicsArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	c := wsrpc.ConnFromContext(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.conns[c]; u != nil {
		for _, t := range a.Topics {
			s.removeTopicLocked(u, t)
		}
	}
	return true, nil
}

func (s *Server) handlePublish(ctx context.Context, raw json.RawMessage) (any, error) {
	var a publishArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	if a.Topics == nil {
		return nil, wsrpc.Errorf(wsrpc.CodeInvalidParams, "invalid params: missing argument topics")
	}
	c := wsrpc.ConnFromContext(ctx)
	if err := s.authorize(ctx, c, ActionPublish, a.Topics); err != nil {
		return nil, err
	}
	notifier := c.ID()
	if a.NotifierID != nil {
		notifier = *a.NotifierID
	}
	sync := a.Sync == nil || *a.Sync
	if err := s.publish(ctx, a.Topics, orNull(a.Data), notifier, sync); err != nil {
		if errors.Is(err, ErrClosed) {
			return nil, wsrpc.ErrShuttingDown
		}
		if errors.Is(err, wsrpc.ErrBrokerMessageTooLarge) {
			return nil, &wsrpc.Error{Code: CodeEventTooLarge, Message: "event too large for the broker: it reached this node's subscribers only"}
		}
		return nil, &wsrpc.Error{Code: CodeBrokerUnavailable, Message: "broker unavailable: the event reached this node's subscribers only"}
	}
	return true, nil
}

// authorize asks the Authorize hook about each topic.
func (s *Server) authorize(ctx context.Context, c *wsrpc.Conn, a Action, topics []string) error {
	if s.opts.Authorize == nil {
		return nil
	}
	for _, t := range topics {
		err := s.opts.Authorize(ctx, c, a, t)
		if err == nil {
			continue
		}
		s.log.Debug("pubsub: refused", "conn", c.ID(), "action", a.String(), "topic", t, "err", err)
		if e, ok := errors.AsType[*wsrpc.Error](err); ok {
			return e
		}
		return &wsrpc.Error{Code: CodeForbidden, Message: fmt.Sprintf("forbidden: %s %q", a, t)}
	}
	return nil
}

// addLocked subscribes u to topic; s.mu held.
func (s *Server) addLocked(u *subscriber, topic string) {
	ts := s.topics[topic]
	if ts == nil {
		ts = &topicSubs{}
		s.topics[topic] = ts
	}
	sub := &subscription{id: newID(), topic: topic, sub: u, idx: len(ts.list)}
	if u.conn != nil {
		sub.head = notifyHead(sub.id, u.id)
	}
	ts.list = append(ts.list, sub)
	u.subs = append(u.subs, sub)
}

// removeLocked drops one subscription from the topic index; s.mu held.
func (s *Server) removeLocked(sub *subscription) {
	ts := s.topics[sub.topic]
	last := len(ts.list) - 1
	ts.list[sub.idx] = ts.list[last]
	ts.list[sub.idx].idx = sub.idx
	ts.list[last] = nil
	ts.list = ts.list[:last]
	if last == 0 {
		delete(s.topics, sub.topic)
	}
}

// removeTopicLocked drops u's subscriptions to topic; s.mu held.
func (s *Server) removeTopicLocked(u *subscriber, topic string) {
	kept := u.subs[:0]
	for _, sub := range u.subs {
		if sub.topic == topic {
			s.removeLocked(sub)
		} else {
			kept = append(kept, sub)
		}
	}
	clear(u.subs[len(kept):])
	u.subs = kept
}

// removeAllLocked drops every subscription of u; s.mu held.
func (s *Server) removeAllLocked(u *subscriber) {
	for _, sub := range u.subs {
		s.removeLocked(sub)
	}
	u.subs = nil
}

// dropConn forgets a connection that ended, with its subscriptions and
// the events still queued for it.
func (s *Server) dropConn(c *wsrpc.Conn) {
	s.mu.Lock()
	u := s.conns[c]
	if u != nil {
		delete(s.conns, c)
		s.removeAllLocked(u)
	}
	s.mu.Unlock()
	if u != nil {
		u.end(ErrSubscriberGone)
	}
}

// Publish publishes data (encoded with encoding/json; a json.RawMessage
// goes as it is) on each of topics: it queues the event for every local
// subscriber, server-side subscriptions included, and sends it to the
// broker, bounded by ctx. It does not wait for the subscribers. The error
// is the broker's (wrapped; the local subscribers got the event), or
// [ErrClosed].
func (s *Server) Publish(ctx context.Context, topics []string, data any) error {
	raw, err := marshalData(data)
	if err != nil {
		return err
	}
	return s.publish(ctx, topics, raw, s.opts.NodeID, false)
}

// marshalData encodes an event's data.
func marshalData(data any) (json.RawMessage, error) {
	if raw, ok := data.(json.RawMessage); ok {
		if !json.Valid(raw) {
			return nil, errors.New("pubsub: data is not valid JSON")
		}
		return orNull(raw), nil
	}
	b, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("pubsub: encode data: %w", err)
	}
	return b, nil
}

// publish delivers an event on each topic to the local subscribers except
// notifier, sends it to the broker, and with sync waits, at most
// SyncTimeout, until every local subscriber took it or was given up on.
// Before it waits it passes its turn on ([wsrpc.PassTurn]), so that the
// next ordered publish of a client's connection may start once this one's
// events are queued; outside an ordered call that does nothing.
func (s *Server) publish(ctx context.Context, topics []string, data json.RawMessage, notifier string, sync bool) error {
	var w *syncWait
	if sync {
		w = newSyncWait()
	}
	var from *wsrpc.Conn
	if !sync {
		from = wsrpc.ConnFromContext(ctx)
	}
	var meta brokerMeta
	var traced context.Context
	if s.opts.Trace != nil {
		meta.TraceParent, meta.TraceState = s.opts.Trace.Inject(ctx)
		traced = s.traced(meta.TraceParent, meta.TraceState)
	}
	for _, t := range topics {
		ev := &event{topic: t, topicJSON: quote(t), data: data, notifier: notifier, sync: w, from: from, ctx: withPublication(traced, t, &meta)}
		if !s.deliver(ev) {
			return ErrClosed
		}
	}
	var stamped *brokerMeta
	if s.stamp {
		meta.TimeNS = time.Now().UnixNano()
		stamped = &meta
	}
	err := s.toBroker(ctx, topics, data, stamped)
	if w != nil {
		wsrpc.PassTurn(ctx)
		w.wait(ctx, s.ctx, s.opts.SyncTimeout)
	}
	return err
}

// deliver queues ev for the subscribers of its topic and of AllTopics,
// except its notifier. It returns false once the Server is closed.
func (s *Server) deliver(ev *event) bool {
	n := 0
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return false
	}
	lists := [2]*topicSubs{s.topics[ev.topic]}
	if ev.topic != AllTopics {
		lists[1] = s.topics[AllTopics]
	}
	if len(s.conns) > 0 {
		ev.tail = notifyTail(ev.topicJSON, ev.data)
	}
	for _, ts := range lists {
		if ts == nil {
			continue
		}
		for _, sub := range ts.list {
			if sub.sub.id != ev.notifier && sub.sub.enqueue(sub, ev) {
				n++
			}
		}
	}
	s.mu.RUnlock()
	s.published.Add(1)
	s.obs.Published(ev.topic, n)
	return true
}

// Subscribe subscribes fn, on this node, to each of topics (AllTopics:
// every topic), and returns the function that unsubscribes it. fn gets
// the events one at a time, in order, each once it returned from the one
// before, in a goroutine of the Server's (none runs while no event
// waits); its ctx ends when the Server closes. A publish with sync waits
// for fn to return. fn's events queue as a connection's do, bounded by
// QueueEvents and QueueBytes; when they are full, events for fn are
// dropped (the Observer is told). An error fn returns is logged at Debug.
//
// Once stop returned, no call of fn starts (one under way finishes).
// stop may be called from fn.
func (s *Server) Subscribe(topics []string, fn Handler) (stop func()) {
	u := &subscriber{s: s, id: newID(), fn: fn}
	s.mu.Lock()
	if !s.closed {
		s.funcs[u] = struct{}{}
		for _, t := range topics {
			s.addLocked(u, t)
		}
	}
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if _, ok := s.funcs[u]; ok {
				delete(s.funcs, u)
				s.removeAllLocked(u)
			}
			s.mu.Unlock()
			u.end(ErrSubscriberGone)
		})
	}
}

// Topics returns the topics subscribed to on this node, each with its
// number of subscriptions (a connection that subscribed twice counts
// twice; AllTopics is a topic of its own).
func (s *Server) Topics() map[string]int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m := make(map[string]int, len(s.topics))
	for t, ts := range s.topics {
		m[t] = len(ts.list)
	}
	return m
}

// Stats are a Server's counters and gauges, from [Server.Stats].
type Stats struct {
	Topics        int // topics with a subscription
	Subscriptions int // subscriptions, over all topics
	Subscribers   int // connections with subscriber state, and server-side subscriptions
	Queued        int // events queued for subscribers or waiting for their answer

	Published       uint64 // events published on this node or received from the broker, one per topic
	Delivered       uint64 // notifies answered and server-side calls made
	Dropped         uint64 // events that did not reach a subscriber, as Observer.Dropped counts them
	SlowDisconnects uint64 // subscribers the SlowDisconnect policy closed
}

// Stats returns the Server's counters and gauges now.
func (s *Server) Stats() Stats {
	st := Stats{
		Published:       s.published.Load(),
		Delivered:       s.delivered.Load(),
		Dropped:         s.dropped.Load(),
		SlowDisconnects: s.slowDisconnects.Load(),
	}
	s.mu.RLock()
	st.Topics = len(s.topics)
	for _, ts := range s.topics {
		st.Subscriptions += len(ts.list)
	}
	subs := s.subscribersLocked()
	st.Subscribers = len(subs)
	s.mu.RUnlock()
	for _, u := range subs {
		u.mu.Lock()
		st.Queued += u.held
		u.mu.Unlock()
	}
	return st
}

// subscribersLocked returns the connections' subscribers and the
// server-side subscriptions; s.mu held.
func (s *Server) subscribersLocked() []*subscriber {
	subs := slices.AppendSeq(make([]*subscriber, 0, len(s.conns)+len(s.funcs)), maps.Values(s.conns))
	return slices.AppendSeq(subs, maps.Keys(s.funcs))
}

// Close stops the Server: it unsubscribes from the broker, drops what is
// queued for the subscribers and forgets their subscriptions; later calls
// of the pub/sub methods are answered with wsrpc.ErrShuttingDown. It does
// not close the connections, which belong to the wsrpc.Server. Close
// returns once the Server's goroutines have returned (a slow subscriber's
// close in progress, a server-side function that is running). It is
// idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	subs := s.subscribersLocked()
	clear(s.conns)
	clear(s.funcs)
	clear(s.topics)
	s.mu.Unlock()
	s.cancel()
	s.bmu.Lock()
	stopBroker, stopWatch := s.stopBroker, s.stopWatch
	s.stopBroker, s.stopWatch = nil, nil
	s.bmu.Unlock()
	if stopWatch != nil {
		stopWatch()
	}
	if stopBroker != nil {
		stopBroker()
	}
	for _, u := range subs {
		u.end(ErrClosed)
	}
	s.wg.Wait()
	s.inflight.Wait()
	return nil
}

// syncWait counts the deliveries of a publish with sync that are still
// under way: the publisher holds one until it queued them all.
type syncWait struct {
	n    atomic.Int64
	done chan struct{}
}

func newSyncWait() *syncWait {
	w := &syncWait{done: make(chan struct{})}
	w.n.Store(1)
	return w
}

func (w *syncWait) add() { w.n.Add(1) }

func (w *syncWait) release() {
	if w.n.Add(-1) == 0 {
		close(w.done)
	}
}

// wait releases the publisher's hold and waits until every delivery is
// done, at most d, or until ctx or life ends.
func (w *syncWait) wait(ctx, life context.Context, d time.Duration) {
	w.release()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.done:
	case <-t.C:
	case <-ctx.Done():
	case <-life.Done():
	}
}

// fromBroker handles a message from the broker: an envelope published by
// another node, which goes to the local subscribers. If it says when it
// was published, the Observer is told the lag.
func (s *Server) fromBroker(msg []byte) {
	if bytes.HasPrefix(msg, s.ownPrefix) {
		return // ours, as we encode it
	}
	e, err := decodeEnvelope(msg)
	if err != nil {
		s.log.Warn("pubsub: broker message dropped", "channel", BrokerChannel, "err", err)
		s.obs.Broker(err)
		return
	}
	if e.NotifierID == s.opts.NodeID {
		return
	}
	var lag time.Duration
	timed := false
	if s.opts.Observer != nil {
		lag, timed = e.meta.lag(time.Now())
	}
	var traced context.Context
	if s.opts.Trace != nil {
		traced = s.traced(e.meta.TraceParent, e.meta.TraceState)
	}
	for _, t := range e.Topics {
		if timed {
			s.obs.BrokerLag(t, lag)
		}
		s.deliver(&event{topic: t, topicJSON: quote(t), data: e.Data, notifier: e.NotifierID, ctx: withPublication(traced, t, &e.meta)})
	}
}

// toBroker sends an event to the other nodes: one message per topic, with
// meta, if not nil, as its "wsrpc" member.
func (s *Server) toBroker(ctx context.Context, topics []string, data json.RawMessage, meta *brokerMeta) error {
	if s.opts.Broker == nil {
		return nil
	}
	var errs []error
	var msg []byte
	for _, t := range topics {
		msg = appendEnvelope(msg[:0], s.nodeJSON, quote(t), data, meta)
		if err := s.opts.Broker.Publish(ctx, BrokerChannel, msg); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		err = fmt.Errorf("pubsub: publish to the broker: %w", err)
		s.log.Warn("pubsub: publish to the broker failed: the event reached this node only", "err", err)
		s.obs.Broker(err)
		return err
	}
	return nil
}

// joinBroker subscribes to the broker: at once for a MemoryBroker, else
// in the background, retrying with backoff until it succeeds or the
// Server closes.
func (s *Server) joinBroker() {
	if w, ok := s.opts.Broker.(wsrpc.BrokerWatcher); ok {
		s.stopWatch = w.Watch(s.brokerState)
	}
	if _, ok := s.opts.Broker.(*MemoryBroker); ok {
		stop, err := s.opts.Broker.Subscribe(s.ctx, BrokerChannel, s.fromBroker)
		if err == nil {
			s.stopBroker = stop
			s.obs.Broker(nil)
			return
		}
	}
	s.wg.Go(s.subscribeBroker)
}

// subscribeBroker tries to subscribe to the broker until it succeeds.
func (s *Server) subscribeBroker() {
	wait := 100 * time.Millisecond
	for try := 1; ; try++ {
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		stop, err := s.opts.Broker.Subscribe(ctx, BrokerChannel, s.fromBroker)
		cancel()
		if err == nil {
			s.bmu.Lock()
			if s.ctx.Err() != nil {
				s.bmu.Unlock()
				stop()
				return
			}
			s.stopBroker = stop
			s.bmu.Unlock()
			if try > 1 {
				s.log.Warn("pubsub: subscribed to the broker", "channel", BrokerChannel, "tries", try)
			}
			s.obs.Broker(nil)
			return
		}
		if s.ctx.Err() != nil {
			return
		}
		err = fmt.Errorf("pubsub: subscribe to the broker: %w", err)
		s.log.Warn("pubsub: cannot subscribe to the broker; serving this node's subscribers only", "try", try, "retry_in", wait, "err", err)
		s.obs.Broker(err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// brokerState is told by a BrokerWatcher of its link's state.
func (s *Server) brokerState(err error) {
	if err != nil {
		s.log.Warn("pubsub: broker link lost: events are lost until it is back", "err", err)
	} else {
		s.log.Warn("pubsub: broker link back")
	}
	s.obs.Broker(err)
}
