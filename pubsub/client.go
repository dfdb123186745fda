package pubsub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"github.com/wsrpc/wsrpc"
)

// DefaultHandlerQueue is the default of [ClientOptions].HandlerQueue.
const DefaultHandlerQueue = 256

// ClientOptions configures a [Client]. A nil *ClientOptions, and every
// zero field, means the documented default.
type ClientOptions struct {
	// DialOptions configure the connection, as for wsrpc.Dial. Methods,
	// if set, gets the method notify added (it must not have one); nil
	// means a Mux with notify alone.
	wsrpc.DialOptions
	// HandlerQueue bounds the events waiting for one subscription's
	// handler. When it is full, the client holds back its answers to the
	// server's notifies, which then queue on the server, under its slow
	// subscriber policy. Zero means DefaultHandlerQueue (256).
	HandlerQueue int
}

// Client is a pub/sub client, wire-compatible with fastapi_websocket_pubsub's
// PubSubClient: it subscribes to topics of a [Server] (or of a Python
// PubSubEndpoint), gets their events, and publishes. It lives on a
// [wsrpc.Client], which reconnects when its link drops: on every new
// connection, before that connection serves the application's calls, the
// Client subscribes again to its topics.
//
// A Client is safe for concurrent use. Close closes it.
type Client struct {
	rpc      *wsrpc.Client
	log      *slog.Logger
	maxQueue int

	ctx    context.Context // the handlers'; ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the handlers' goroutines

	// opMu serializes the changes of subscriptions with the server, and
	// re-subscribing on a new connection, so that the server's
	// subscriptions follow the handlers.
	opMu sync.Mutex
	conn *wsrpc.Conn // the connection the server's subscriptions are on; opMu guards it

	mu       sync.Mutex // guards the fields below
	handlers map[string]*clientSub
	closed   bool
}

// Dial connects to the pub/sub server at url (see wsrpc.Dial) and returns
// a Client without subscriptions. ctx bounds only the first connect.
func Dial(ctx context.Context, url string, opts *ClientOptions) (*Client, error) {
	var o ClientOptions
	if opts != nil {
		o = *opts
	}
	if o.HandlerQueue < 0 {
		return nil, errors.New("pubsub: HandlerQueue must not be negative")
	}
	mux := o.Methods
	if mux == nil {
		mux = wsrpc.NewMux()
	}
	if slices.Contains(mux.Methods(), "notify") {
		return nil, errors.New("pubsub: DialOptions.Methods already has a method notify")
	}
	pc := &Client{
		log:      o.Logger,
		maxQueue: o.HandlerQueue,
		handlers: make(map[string]*clientSub),
	}
	if pc.log == nil {
		pc.log = slog.Default()
	}
	if pc.maxQueue == 0 {
		pc.maxQueue = DefaultHandlerQueue
	}
	pc.ctx, pc.cancel = context.WithCancel(context.Background())
	// Ordered: the notifies run in the order they arrived, each queuing
	// its event for its subscription's handler.
	mux.HandleOrdered("notify", wsrpc.HandlerFunc(pc.handleNotify))
	o.Methods = mux
	cl, err := wsrpc.Dial(ctx, url, &o.DialOptions)
	if err != nil {
		pc.cancel()
		return nil, err
	}
	pc.rpc = cl
	cl.RegisterOnConnect(pc.resubscribe)
	pc.opMu.Lock()
	pc.conn = cl.Conn()
	pc.opMu.Unlock()
	return pc, nil
}

// RPC returns the wsrpc.Client the Client lives on, to call the server's
// other methods.
func (pc *Client) RPC() *wsrpc.Client { return pc.rpc }

// Subscribe subscribes h to topic (AllTopics: every topic) and returns
// once the server took the subscription. h gets the topic's events one at
// a time, in order, in a goroutine of the Client's (none runs while no
// event waits); its ctx ends when the Client closes. A Client has one
// handler per topic: subscribing again to a topic fails.
//
// The subscription holds across reconnects. If the link is down, or drops
// before the server answered, Subscribe returns nil and the Client
// subscribes on the next connection. An error means that there is no
// subscription: the server refused it (an error matching [ErrForbidden]
// when its Authorize hook did), ctx ended, the Client is closed
// ([ErrClosed]) or its wsrpc.Client ended for good.
//
// The server sends an event once per subscription: a Client subscribed to
// AllTopics subscribes the server to AllTopics alone, and gives each event
// to the handler of its topic and to the AllTopics handler. Switching
// between the two (subscribing to AllTopics while holding topics, or
// unsubscribing from it) may lose the events published meanwhile, never
// duplicate them.
func (pc *Client) Subscribe(ctx context.Context, topic string, h Handler) error {
	if h == nil {
		return errors.New("pubsub: Subscribe with a nil Handler")
	}
	return pc.change(ctx, func() error {
		if _, dup := pc.handlers[topic]; dup {
			return fmt.Errorf("pubsub: already subscribed to %q", topic)
		}
		pc.handlers[topic] = &clientSub{pc: pc, topic: topic, h: h}
		return nil
	})
}

// Unsubscribe drops the subscription to topic, if any, and returns once
// the server dropped it. Once it returned, no call of the handler starts;
// events still queued for it are dropped. Errors are as for Subscribe; the
// handler is gone in any case.
func (pc *Client) Unsubscribe(ctx context.Context, topic string) error {
	var gone *clientSub
	err := pc.change(ctx, func() error {
		gone = pc.handlers[topic]
		delete(pc.handlers, topic)
		return nil
	})
	if gone != nil {
		gone.stop()
	}
	return err
}

// change applies edit to the handlers, then brings the server's
// subscriptions in line: it unsubscribes first, so that no event comes
// twice, then subscribes. If the server refuses, or ctx ends first, the
// handlers added go and those removed stay removed; it never waits past
// ctx.
func (pc *Client) change(ctx context.Context, edit func() error) error {
	pc.opMu.Lock()
	defer pc.opMu.Unlock()
	pc.mu.Lock()
	if pc.closed {
		pc.mu.Unlock()
		return ErrClosed
	}
	before := maps.Clone(pc.handlers)
	if err := edit(); err != nil {
		pc.mu.Unlock()
		return err
	}
	was, now := serverTopics(before), serverTopics(pc.handlers)
	pc.mu.Unlock()
	drop, add := minus(was, now), minus(now, was)
	c := pc.conn
	if c == nil || c.Err() != nil {
		select {
		case <-pc.rpc.Done(): // no next connection
			return fmt.Errorf("pubsub: the client ended: %w", pc.rpc.Err())
		default:
			return nil // the next connection subscribes
		}
	}
	err := pc.call(ctx, c, "unsubscribe", drop)
	if err == nil {
		err = pc.call(ctx, c, "subscribe", add)
	}
	if err == nil || lostConn(err) {
		return nil
	}
	// Undo the additions: their handlers go. What the edit removed stays
	// removed (an unsubscribed handler is gone in any case). No call
	// restores the server's side: a topic the server still sends has no
	// handler, so its events are ignored, and nothing here outlives ctx.
	pc.mu.Lock()
	for t, s := range pc.handlers {
		if before[t] != s {
			s.stop()
			delete(pc.handlers, t)
		}
	}
	pc.mu.Unlock()
	return err
}

// call calls subscribe or unsubscribe with topics, if there are any.
func (pc *Client) call(ctx context.Context, c *wsrpc.Conn, method string, topics []string) error {
	if len(topics) == 0 {
		return nil
	}
	var ok bool
	err := c.Call(ctx, method, topicsArgs{Topics: topics}, &ok)
	if err != nil {
		return refused(err)
	}
	return nil
}

// refused marks a refusal of the server's Authorize hook with ErrForbidden.
func refused(err error) error {
	if e, ok := errors.AsType[*wsrpc.Error](err); ok && e.Code == CodeForbidden {
		return fmt.Errorf("%w: %w", ErrForbidden, err)
	}
	return err
}

// lostConn reports whether err is the end of the connection a call went
// on, rather than the server's answer or the caller's context.
func lostConn(err error) bool {
	return errors.Is(err, wsrpc.ErrConnectionLost) || errors.Is(err, wsrpc.ErrClosed) || errors.Is(err, wsrpc.ErrNotConnected)
}

// resubscribe subscribes, on a new connection, to the Client's topics, in
// one call as PubSubClient does. It runs among the connection's OnConnect
// hooks, so that the connection serves the application only afterwards.
// A topic the server refuses is logged and left out; a connection that
// fails closes, and the client tries again on the next.
func (pc *Client) resubscribe(ctx context.Context, c *wsrpc.Conn) error {
	pc.opMu.Lock()
	defer pc.opMu.Unlock()
	pc.mu.Lock()
	topics := serverTopics(pc.handlers)
	pc.mu.Unlock()
	err := pc.call(ctx, c, "subscribe", topics)
	if err != nil && !lostConn(err) && ctx.Err() == nil {
		if _, answered := errors.AsType[*wsrpc.Error](err); answered {
			// One topic at a time, to keep those the server takes.
			err = nil
			for _, t := range topics {
				if terr := pc.call(ctx, c, "subscribe", []string{t}); terr != nil {
					if lostConn(terr) {
						return terr
					}
					pc.log.Warn("pubsub: the server refused a subscription on reconnect", "topic", t, "err", terr)
				}
			}
		}
	}
	if err != nil {
		return err
	}
	pc.conn = c
	return nil
}

// serverTopics are the topics the server is subscribed to for handlers:
// AllTopics alone if it is among them, else all of them.
func serverTopics(handlers map[string]*clientSub) []string {
	if _, all := handlers[AllTopics]; all {
		return []string{AllTopics}
	}
	return slices.Sorted(maps.Keys(handlers))
}

// minus returns the elements of a that are not in b.
func minus(a, b []string) []string {
	var out []string
	for _, t := range a {
		if !slices.Contains(b, t) {
			out = append(out, t)
		}
	}
	return out
}

// handleNotify is the client's notify method. The calls run one at a time
// in arrival order (Mux.HandleOrdered): each hands its event to the
// handlers of its topic and of AllTopics, waiting while a handler's queue
// is full, and answers as PubSubClient does ("None"), also for a topic
// without handler.
func (pc *Client) handleNotify(ctx context.Context, raw json.RawMessage) (any, error) {
	var a notifyArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	ev := Event{Topic: a.Subscription.Topic, Data: orNull(a.Data)}
	pc.mu.Lock()
	subs := [2]*clientSub{pc.handlers[ev.Topic]}
	if ev.Topic != AllTopics {
		subs[1] = pc.handlers[AllTopics]
	}
	pc.mu.Unlock()
	for _, s := range subs {
		if s != nil {
			if err := s.push(ctx, ev); err != nil {
				return nil, err
			}
		}
	}
	return "None", nil
}

// Publish publishes data (encoded with encoding/json; a json.RawMessage
// goes as it is) on each of topics, as PubSubClient does by default: with
// sync, the server answers once its subscribers took the event (or its
// SyncTimeout passed), and not to this client's own subscriptions. It
// returns once the server answered. A refusal of the server's Authorize
// hook matches [ErrForbidden].
func (pc *Client) Publish(ctx context.Context, topics []string, data any) error {
	return pc.PublishWith(ctx, topics, data, PublishOptions{})
}

// PublishOptions are the options of [Client.PublishWith]. The zero value
// publishes as [Client.Publish] does.
type PublishOptions struct {
	// NoSync has the server answer at once, without waiting for its
	// subscribers (sync=false).
	NoSync bool
	// NotifierID is the notifier id the event goes with: the subscriber
	// with that id does not get it. Empty means this connection's own
	// (notifier_id null), so that this client does not hear itself; any
	// other id makes its own subscriptions get the event too.
	NotifierID string
}

// PublishWith is [Client.Publish] with the options opts.
func (pc *Client) PublishWith(ctx context.Context, topics []string, data any, opts PublishOptions) error {
	raw, err := marshalData(data)
	if err != nil {
		return err
	}
	sync := !opts.NoSync
	args := publishArgs{Topics: topics, Data: raw, Sync: &sync}
	if args.Topics == nil {
		args.Topics = topicList{}
	}
	if opts.NotifierID != "" {
		args.NotifierID = &opts.NotifierID
	}
	if pc.isClosed() {
		return ErrClosed
	}
	var ok bool
	return refused(pc.rpc.Call(ctx, "publish", args, &ok))
}

func (pc *Client) isClosed() bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.closed
}

// Topics returns the topics the Client is subscribed to, sorted.
func (pc *Client) Topics() []string {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return slices.Sorted(maps.Keys(pc.handlers))
}

// Close closes the connection and stops the handlers: events still queued
// are dropped, and the handlers' contexts end. It returns once the
// handlers' goroutines and the wsrpc.Client's have returned. It is
// idempotent.
func (pc *Client) Close() error {
	pc.mu.Lock()
	pc.closed = true
	subs := make([]*clientSub, 0, len(pc.handlers))
	for _, s := range pc.handlers {
		subs = append(subs, s)
	}
	pc.mu.Unlock()
	err := pc.rpc.Close()
	pc.cancel()
	for _, s := range subs {
		s.stop()
	}
	pc.wg.Wait()
	return err
}

// clientSub is one topic's handler with its queue of events. A goroutine
// runs the handler while events wait, and only then.
type clientSub struct {
	pc    *Client
	topic string
	h     Handler

	mu      sync.Mutex // guards the fields below
	queue   []Event
	running bool
	stopped bool
	room    chan struct{} // closed when the queue shrinks, for push to wait on
}

// push queues ev for the handler, waiting while the queue is full, until
// ctx (the notify's) ends.
func (s *clientSub) push(ctx context.Context, ev Event) error {
	for {
		s.mu.Lock()
		if s.stopped {
			s.mu.Unlock()
			return nil
		}
		if len(s.queue) < s.pc.maxQueue {
			s.queue = append(s.queue, ev)
			start := !s.running
			s.running = true
			s.mu.Unlock()
			if start {
				s.pc.wg.Go(s.run)
			}
			return nil
		}
		if s.room == nil {
			s.room = make(chan struct{})
		}
		room := s.room
		s.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// run calls the handler with the queued events, in order, until none is
// left.
func (s *clientSub) run() {
	for {
		s.mu.Lock()
		if s.stopped || len(s.queue) == 0 {
			s.queue = nil
			s.running = false
			s.mu.Unlock()
			return
		}
		ev := s.queue[0]
		s.queue[0] = Event{}
		s.queue = s.queue[1:]
		if s.room != nil {
			close(s.room)
			s.room = nil
		}
		s.mu.Unlock()
		if err := s.call(ev); err != nil {
			s.pc.log.Warn("pubsub: event handler failed", "topic", ev.Topic, "err", err)
		}
	}
}

// call runs the handler, turning a panic into an error.
func (s *clientSub) call(ev Event) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.pc.log.Error("pubsub: event handler panicked", "topic", ev.Topic, "panic", p)
			err = fmt.Errorf("pubsub: event handler panicked: %v", p)
		}
	}()
	return s.h(s.pc.ctx, ev)
}

// stop drops the queued events; no call of the handler starts after.
func (s *clientSub) stop() {
	s.mu.Lock()
	s.stopped = true
	s.queue = nil
	if s.room != nil {
		close(s.room)
		s.room = nil
	}
	s.mu.Unlock()
}
