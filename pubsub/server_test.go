package pubsub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsrpc/wsrpc"
)

// TestPublishSubscribe: a Go client's subscription gets what another
// client and the application publish, decoded with Typed; the publisher
// does not hear itself.
func TestPublishSubscribe(t *testing.T) {
	ctx := ctxT(t)
	n := newNode(t, nil, nil)
	type order struct {
		ID    int      `json:"id"`
		Items []string `json:"items"`
	}
	got := make(chan order, 4)
	sub := dial(t, n.url, nil)
	if err := sub.Subscribe(ctx, "orders", Typed(func(_ context.Context, topic string, o order) error {
		if topic != "orders" {
			t.Errorf("topic %q", topic)
		}
		got <- o
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	pub := dial(t, n.url, nil)
	own := newCollector()
	if err := pub.Subscribe(ctx, "orders", own.handle); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, []string{"orders"}, order{ID: 7, Items: []string{"tea", "café"}}); err != nil {
		t.Fatal(err)
	}
	if o := recv(ctx, t, got, "the client's event"); o.ID != 7 || len(o.Items) != 2 || o.Items[1] != "café" {
		t.Errorf("got %+v", o)
	}
	if err := n.ps.Publish(ctx, []string{"orders"}, order{ID: 8}); err != nil {
		t.Fatal(err)
	}
	if o := recv(ctx, t, got, "the application's event"); o.ID != 8 {
		t.Errorf("got %+v", o)
	}
	// The publisher got the application's event, not its own.
	if ev := recv(ctx, t, own.ch, "the publisher's event"); string(ev.Data) != `{"id":8,"items":null}` {
		t.Errorf("the publisher got %s, want only the application's event", ev.Data)
	}
	if st := n.ps.Stats(); st.Topics != 1 || st.Subscriptions != 2 || st.Subscribers != 2 {
		t.Errorf("Stats = %+v, want 1 topic, 2 subscriptions, 2 subscribers", st)
	}
}

// TestArgumentForms: the forms of FWP's arguments and their defaults, and
// answers to bad ones that leave the connection up.
func TestArgumentForms(t *testing.T) {
	ctx := ctxT(t)
	n := newNode(t, nil, nil)
	sub := dialRaw(t, n.url, false)
	pub := dialRaw(t, n.url, false)

	mustTrue(t, sub.call(ctx, "subscribe", map[string]any{}), "subscribe()")
	mustTrue(t, sub.call(ctx, "subscribe", map[string]any{"topics": "bare"}), "subscribe(topics='bare')")
	mustTrue(t, sub.call(ctx, "subscribe", map[string]any{"topics": []string{"a", "b"}}), "subscribe(topics=[a, b])")
	mustTrue(t, sub.call(ctx, "subscribe", map[string]any{"topics": []string{}}), "subscribe(topics=[])")
	if got := n.ps.Topics(); len(got) != 3 || got["bare"] != 1 || got["a"] != 1 || got["b"] != 1 {
		t.Fatalf("Topics() = %v", got)
	}

	// publish(topics) alone: data null, sync true; a bare string.
	pubDone := make(chan frame, 1)
	go func() { pubDone <- pub.call(ctx, "publish", map[string]any{"topics": "bare"}) }()
	nt, id := sub.nextNotify(ctx)
	if nt.Subscription.Topic != "bare" || string(nt.Data) != "null" || nt.Subscription.NotifierID != nil ||
		len(nt.Subscription.ID) != 32 || len(nt.Subscription.SubscriberID) != 32 {
		t.Errorf("notify %+v", nt)
	}
	select {
	case f := <-pubDone:
		t.Fatalf("publish answered %+v before its subscriber took the event (sync is the default)", f.Response)
	default:
	}
	sub.answer(id)
	mustTrue(t, recv(ctx, t, pubDone, "publish's answer"), "publish(topics='bare')")

	// Explicit sync false, and a data of each JSON kind.
	for _, data := range []string{`1`, `2.5`, `"s"`, `true`, `[1,2]`, `{"k":null}`} {
		mustTrue(t, pub.call(ctx, "publish", map[string]any{"topics": []string{"a"}, "data": json.RawMessage(data), "sync": false, "notifier_id": nil}), "publish "+data)
		nt, id := sub.nextNotify(ctx)
		sub.answer(id)
		var want, got any
		json.Unmarshal([]byte(data), &want)
		json.Unmarshal(nt.Data, &got)
		if fmt.Sprint(want) != fmt.Sprint(got) {
			t.Errorf("data %s arrived as %s", data, nt.Data)
		}
	}

	f := pub.call(ctx, "ping", nil)
	if f.Response == nil || string(f.Response.Result) != `"pong"` || f.Response.ResultType != "str" {
		t.Errorf("ping: %+v", f.Response)
	}
	mustTrue(t, sub.call(ctx, "unsubscribe", map[string]any{"topics": "bare"}), "unsubscribe(topics='bare')")
	mustTrue(t, sub.call(ctx, "unsubscribe", map[string]any{"topics": []string{"never"}}), "unsubscribe(never)")

	// Bad arguments: an invalid-params answer, and the connection lives.
	for _, args := range []any{
		map[string]any{"topics": 5},
		map[string]any{"topics": []any{"a", 1}},
	} {
		f := sub.call(ctx, "subscribe", args)
		if f.Response == nil || f.Response.Error == nil || f.Response.Error.Code != wsrpc.CodeInvalidParams {
			t.Errorf("subscribe(%v): %+v, want invalid params", args, f.Response)
		}
	}
	f = pub.call(ctx, "publish", map[string]any{"data": 1})
	if f.Response == nil || f.Response.Error == nil || f.Response.Error.Code != wsrpc.CodeInvalidParams {
		t.Errorf("publish without topics: %+v, want invalid params", f.Response)
	}
	mustTrue(t, sub.call(ctx, "subscribe", map[string]any{"topics": []string{"c"}}), "subscribe after bad calls")
}

// TestAllTopics: an ALL_TOPICS subscription gets every topic, each notify
// with the real topic and the ALL_TOPICS subscription's id, besides the
// topic's own subscribers; a Go client's AllTopics handler and topic
// handler each get an event once.
func TestAllTopics(t *testing.T) {
	ctx := ctxT(t)
	n := newNode(t, nil, nil)
	all := dialRaw(t, n.url, false)
	mustTrue(t, all.call(ctx, "subscribe", map[string]any{"topics": AllTopics}), "subscribe(ALL_TOPICS)")
	direct := dialRaw(t, n.url, false)
	mustTrue(t, direct.call(ctx, "subscribe", map[string]any{"topics": []string{"weather"}}), "subscribe(weather)")

	goAll := newCollector()
	goTopic := newCollector()
	cl := dial(t, n.url, nil)
	if err := cl.Subscribe(ctx, "weather", goTopic.handle); err != nil {
		t.Fatal(err)
	}
	if err := cl.Subscribe(ctx, AllTopics, goAll.handle); err != nil {
		t.Fatal(err)
	}
	if got := n.ps.Topics(); got[AllTopics] != 2 || got["weather"] != 1 {
		t.Fatalf("Topics() = %v: the Go client holds AllTopics alone on the server", got)
	}

	pub := dial(t, n.url, nil)
	var subID string
	for _, topic := range []string{"weather", "orders", "news"} {
		if err := pub.PublishWith(ctx, []string{topic}, topic, PublishOptions{NoSync: true}); err != nil {
			t.Fatal(err)
		}
		nt, id := all.nextNotify(ctx)
		all.answer(id)
		if nt.Subscription.Topic != topic {
			t.Errorf("ALL_TOPICS notify for %q carries topic %q", topic, nt.Subscription.Topic)
		}
		if subID == "" {
			subID = nt.Subscription.ID
		} else if nt.Subscription.ID != subID {
			t.Errorf("ALL_TOPICS notifies carry subscription ids %s and %s", subID, nt.Subscription.ID)
		}
		if ev := recv(ctx, t, goAll.ch, "the AllTopics handler"); ev.Topic != topic {
			t.Errorf("AllTopics handler got %q, want %q", ev.Topic, topic)
		}
	}
	nt, id := direct.nextNotify(ctx)
	direct.answer(id)
	if nt.Subscription.Topic != "weather" {
		t.Errorf("the direct subscriber got %q", nt.Subscription.Topic)
	}
	if ev := recv(ctx, t, goTopic.ch, "the topic handler"); ev.Topic != "weather" {
		t.Errorf("topic handler got %q", ev.Topic)
	}
	// Each handler got its events once.
	if err := pub.PublishWith(ctx, []string{"end"}, nil, PublishOptions{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	if ev := recv(ctx, t, goAll.ch, "the AllTopics handler"); ev.Topic != "end" {
		t.Errorf("AllTopics handler got %q after the three, want end (an event twice?)", ev.Topic)
	}
	select {
	case ev := <-goTopic.ch:
		t.Errorf("topic handler got %q twice", ev.Topic)
	default:
	}

	// Unsubscribing from AllTopics brings back the topic on the server.
	if err := cl.Unsubscribe(ctx, AllTopics); err != nil {
		t.Fatal(err)
	}
	if got := n.ps.Topics(); got[AllTopics] != 1 || got["weather"] != 2 {
		t.Errorf("Topics() = %v after the Go client left AllTopics", got)
	}
}

// TestOrderPerTopic: under concurrent publishers, every subscriber gets
// each publisher's events of each topic once, in the order published.
func TestOrderPerTopic(t *testing.T) {
	ctx := ctxT(t)
	n := newNode(t, nil, nil)
	const (
		publishers  = 4
		subscribers = 5
		perTopic    = 60
	)
	topics := []string{"t0", "t1", "t2"}
	type ev struct {
		Pub, Seq int
	}
	var wg sync.WaitGroup
	results := make([]chan Event, subscribers)
	for i := range subscribers {
		cl := dial(t, n.url, nil)
		c := newCollector()
		results[i] = c.ch
		for _, topic := range topics {
			if err := cl.Subscribe(ctx, topic, c.handle); err != nil {
				t.Fatal(err)
			}
		}
	}
	for p := range publishers {
		cl := dial(t, n.url, nil)
		wg.Go(func() {
			for seq := range perTopic {
				for _, topic := range topics {
					opts := PublishOptions{NoSync: seq%2 == 0}
					if err := cl.PublishWith(ctx, []string{topic}, ev{p, seq}, opts); err != nil {
						t.Errorf("publish: %v", err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	for i, ch := range results {
		next := map[string]int{}
		for range publishers * perTopic * len(topics) {
			e := recv(ctx, t, ch, "an event")
			var v ev
			if err := e.Decode(&v); err != nil {
				t.Fatal(err)
			}
			key := fmt.Sprint(e.Topic, "/", v.Pub)
			if v.Seq != next[key] {
				t.Fatalf("subscriber %d: %s event %d arrived when %d was next", i, key, v.Seq, next[key])
			}
			next[key]++
		}
	}
	if st := n.ps.Stats(); st.Dropped != 0 {
		t.Errorf("%d events dropped", st.Dropped)
	}
}

// TestSilentSubscriber: a subscriber that never answers its notifies
// delays neither the publisher nor 100 others, which get everything; its
// queue fills and the default policy disconnects it with 4008.
func TestSilentSubscriber(t *testing.T) {
	ctx := ctxT(t)
	var slow atomic.Int32
	obs := &countingObserver{}
	n := newNode(t, &Options{QueueEvents: 16, Observer: obs}, nil)
	silent := dialRaw(t, n.url, false)
	mustTrue(t, silent.call(ctx, "subscribe", map[string]any{"topics": []string{"news"}}), "subscribe")
	const others, events = 100, 50
	cols := make([]*collector, others)
	for i := range cols {
		cl := dial(t, n.url, nil)
		cols[i] = newCollector()
		if err := cl.Subscribe(ctx, "news", cols[i].handle); err != nil {
			t.Fatal(err)
		}
	}
	pub := dial(t, n.url, nil)
	// Each event reaches the 100 before the next is published: the
	// silent one holds up none of them.
	for want := range events {
		if err := pub.PublishWith(ctx, []string{"news"}, want, PublishOptions{NoSync: true}); err != nil {
			t.Fatal(err)
		}
		for i, c := range cols {
			var got int
			if err := recv(ctx, t, c.ch, "an event").Decode(&got); err != nil || got != want {
				t.Fatalf("subscriber %d got %d (%v), want %d", i, got, err, want)
			}
		}
	}
	// The silent subscriber saw notifies, never answered, and was closed
	// as slow.
	seen := 0
	for range silent.frames {
		seen++
	}
	var ce *websocket.CloseError
	if !errors.As(silent.readErr(), &ce) || ce.Code != CloseSlowSubscriber {
		t.Fatalf("the silent subscriber ended with %v, want close %d", silent.readErr(), CloseSlowSubscriber)
	}
	if seen == 0 || seen > 16 {
		t.Errorf("the silent subscriber got %d notifies, want 1 to QueueEvents (16)", seen)
	}
	slow.Store(int32(n.ps.Stats().SlowDisconnects))
	if slow.Load() != 1 || obs.slow.Load() != 1 {
		t.Errorf("SlowDisconnects %d, Observer.SlowDisconnect %d, want 1", slow.Load(), obs.slow.Load())
	}
	pollUntil(t, "the silent subscriber's subscriptions to go", func() bool { return n.ps.Topics()["news"] == others })
}

// countingObserver counts what an Observer is told.
type countingObserver struct {
	NopObserver
	published, delivered, dropped, slow atomic.Int64
	brokerErrs, brokerUps               atomic.Int64
}

func (o *countingObserver) Published(string, int)                { o.published.Add(1) }
func (o *countingObserver) Delivered(*wsrpc.Conn, string, error) { o.delivered.Add(1) }
func (o *countingObserver) Dropped(*wsrpc.Conn, string, error)   { o.dropped.Add(1) }
func (o *countingObserver) SlowDisconnect(*wsrpc.Conn)           { o.slow.Add(1) }
func (o *countingObserver) Broker(err error) {
	if err != nil {
		o.brokerErrs.Add(1)
	} else {
		o.brokerUps.Add(1)
	}
}

// TestStalledReader: a subscriber that stops reading its socket. With
// SlowDrop its events beyond the queue are dropped and counted, and the
// server's memory stays bounded however much is published; with
// SlowDisconnect it is closed.
func TestStalledReader(t *testing.T) {
	for _, policy := range []SlowPolicy{SlowDrop, SlowDisconnect} {
		t.Run(policy.String(), func(t *testing.T) {
			ctx := ctxT(t)
			const queueBytes = 1 << 20
			obs := &countingObserver{}
			n := newNode(t, &Options{QueueBytes: queueBytes, Slow: policy, Observer: obs},
				&wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{SendQueueBytes: 1 << 20, WriteTimeout: time.Minute}})
			stalled := dialRaw(t, n.url, true)
			stalled.send(`{"request": {"method": "subscribe", "arguments": {"topics": ["big"]}, "call_id": "s1"}}`)
			n.subscribed(t, "big", 1)

			runtime.GC()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			before := m.HeapAlloc
			const events, size = 400, 64 << 10 // 25 MiB in all
			maxQueued := 0
			for i := range events {
				data := make([]byte, size)
				for j := range data {
					data[j] = 'a' + byte(i%26)
				}
				if err := n.ps.Publish(ctx, []string{"big"}, string(data)); err != nil {
					t.Fatal(err)
				}
				maxQueued = max(maxQueued, n.ps.Stats().Queued)
			}
			if limit := queueBytes/size + 1; maxQueued > limit {
				t.Errorf("up to %d events queued for the stalled subscriber, want at most %d (QueueBytes)", maxQueued, limit)
			}
			runtime.GC()
			runtime.ReadMemStats(&m)
			// The queue (1 MiB), the send queue (1 MiB) and the socket's
			// buffers hold what is left: far less than the 25 MiB published.
			if grown := int64(m.HeapAlloc) - int64(before); grown > 12<<20 {
				t.Errorf("the heap grew by %d MiB while a stalled subscriber was sent 25 MiB", grown>>20)
			}
			switch policy {
			case SlowDrop:
				if st := n.ps.Stats(); st.Dropped < events/2 || st.SlowDisconnects != 0 {
					t.Errorf("Stats = %+v, want most events dropped and no disconnect", st)
				}
				if obs.dropped.Load() < events/2 {
					t.Errorf("Observer.Dropped told %d times", obs.dropped.Load())
				}
			case SlowDisconnect:
				if st := n.ps.Stats(); st.SlowDisconnects != 1 {
					t.Errorf("Stats = %+v, want one slow disconnect", st)
				}
				// The server closes the connection (after its close
				// timeout, since the peer reads nothing).
				pollUntil(t, "the stalled subscriber to be gone", func() bool { return n.ps.Topics()["big"] == 0 && len(n.srv.Conns()) == 0 })
			}
		})
	}
}

// TestSyncBound: a publish with sync waits for the subscribers' answers,
// and a subscriber that never answers holds it only for SyncTimeout: FWP
// waits forever.
func TestSyncBound(t *testing.T) {
	ctx := ctxT(t)
	const bound = 300 * time.Millisecond
	// The notify's call timeout is an hour: a publish that waited for it,
	// not for SyncTimeout, would outlast the test's context.
	n := newNode(t, &Options{SyncTimeout: bound}, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{CallTimeout: time.Hour}})
	silent := dialRaw(t, n.url, false)
	mustTrue(t, silent.call(ctx, "subscribe", map[string]any{"topics": []string{"orders"}}), "subscribe")
	pub := dial(t, n.url, nil)
	start := time.Now()
	if err := pub.Publish(ctx, []string{"orders"}, "second"); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < bound {
		t.Errorf("sync publish with a silent subscriber answered after %v, before SyncTimeout (%v)", el, bound)
	}
	if _, id := silent.nextNotify(ctx); id == "" {
		t.Error("the silent subscriber got no notify")
	}
	// Without sync: at once, although the subscriber is still silent.
	done := make(chan error, 1)
	go func() { done <- pub.PublishWith(ctx, []string{"orders"}, "third", PublishOptions{NoSync: true}) }()
	if err := recv(ctx, t, done, "publish without sync"); err != nil {
		t.Fatal(err)
	}
}

// TestSyncReleasedByDisconnect: a sync publish that waits for a silent
// subscriber returns once that subscriber disconnects, long before
// SyncTimeout (an hour here): a subscriber that went away is given up on
// at once.
func TestSyncReleasedByDisconnect(t *testing.T) {
	ctx := ctxT(t)
	n := newNode(t, &Options{SyncTimeout: time.Hour}, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{CallTimeout: time.Hour}})
	silent := dialRaw(t, n.url, false)
	mustTrue(t, silent.call(ctx, "subscribe", map[string]any{"topics": []string{"orders"}}), "subscribe")
	pub := dial(t, n.url, nil)
	done := make(chan error, 1)
	go func() { done <- pub.Publish(ctx, []string{"orders"}, "first") }()
	if _, id := silent.nextNotify(ctx); id == "" {
		t.Fatal("the silent subscriber got no notify")
	}
	select {
	case err := <-done:
		t.Fatalf("the sync publish returned (%v) while its subscriber held its notify", err)
	default:
	}
	silent.ws.Close()
	if err := recv(ctx, t, done, "the sync publish, once its subscriber left"); err != nil {
		t.Fatalf("the sync publish: %v", err)
	}
	// Counted just after the publish was let go.
	pollUntil(t, "the event to be counted dropped", func() bool { return n.ps.Stats().Dropped == 1 })
	if st := n.ps.Stats(); st.Delivered != 0 {
		t.Errorf("Stats: %d delivered; want none: the only subscriber left without answering", st.Delivered)
	}
}

// TestPublisherSubscribed: a connection publishing with sync on a topic it
// subscribes, with a foreign notifier_id, gets the notify and then the
// answer (FWP deadlocks); with its own notifier id it hears nothing.
func TestPublisherSubscribed(t *testing.T) {
	ctx := ctxT(t)
	n := newNode(t, nil, nil)
	raw := dialRaw(t, n.url, false)
	mustTrue(t, raw.call(ctx, "subscribe", map[string]any{"topics": []string{"users"}}), "subscribe")
	// raw.call answers the notify that comes before the answer.
	mustTrue(t, raw.call(ctx, "publish", map[string]any{"topics": []string{"users"}, "data": "stuck", "sync": true, "notifier_id": "recorder-notifier-0002"}), "publish to itself")
	raw.ws.Close()
	n.subscribed(t, "users", 0)

	cl := dial(t, n.url, nil)
	c := newCollector()
	if err := cl.Subscribe(ctx, "users", c.handle); err != nil {
		t.Fatal(err)
	}
	if err := cl.PublishWith(ctx, []string{"users"}, "mine", PublishOptions{NotifierID: "someone else"}); err != nil {
		t.Fatal(err)
	}
	if ev := recv(ctx, t, c.ch, "its own event"); string(ev.Data) != `"mine"` {
		t.Errorf("got %s", ev.Data)
	}
	// With its own notifier id (the default), it does not hear itself.
	if err := cl.Publish(ctx, []string{"users"}, "silent"); err != nil {
		t.Fatal(err)
	}
	if err := n.ps.Publish(ctx, []string{"users"}, "marker"); err != nil {
		t.Fatal(err)
	}
	if ev := recv(ctx, t, c.ch, "the marker"); string(ev.Data) != `"marker"` {
		t.Errorf("got %s, want the marker: the client heard its own publication", ev.Data)
	}
}

// TestNotifiesInParallel: the subscribers of a topic are notified at once,
// not each after the one before answered (FWP's queue), and one
// subscriber gets many notifies in flight (pipelined) before it answers.
func TestNotifiesInParallel(t *testing.T) {
	ctx := ctxT(t)
	n := newNode(t, nil, nil)
	a, b := dialRaw(t, n.url, false), dialRaw(t, n.url, false)
	for _, r := range []*rawConn{a, b} {
		mustTrue(t, r.call(ctx, "subscribe", map[string]any{"topics": []string{"orders"}}), "subscribe")
	}
	const k = 10
	for i := range k {
		if err := n.ps.Publish(ctx, []string{"orders"}, i); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []*rawConn{a, b} {
		var ids []string
		for i := range k {
			nt, id := r.nextNotify(ctx) // no answer yet
			if string(nt.Data) != fmt.Sprint(i) {
				t.Errorf("notify %d carries %s", i, nt.Data)
			}
			ids = append(ids, id)
		}
		for _, id := range ids {
			r.answer(id)
		}
	}
	pollUntil(t, "the answers", func() bool { return n.ps.Stats().Delivered == 2*k })
}

// TestDisconnectDropsSubscriptions: a connection's subscriptions go when
// it ends, also when the client's channel id is not the server's (FWP's
// rpc_channel_get_remote_id leak); publishing after costs nothing.
func TestDisconnectDropsSubscriptions(t *testing.T) {
	ctx := ctxT(t)
	n := newNode(t, nil, nil)
	raw := dialRaw(t, n.url, false)
	mustTrue(t, raw.call(ctx, "subscribe", map[string]any{"topics": []string{"orders", "users", AllTopics}}), "subscribe")
	cl := dial(t, n.url, nil)
	if err := cl.Subscribe(ctx, "orders", newCollector().handle); err != nil {
		t.Fatal(err)
	}
	if st := n.ps.Stats(); st.Subscriptions != 4 || st.Subscribers != 2 {
		t.Fatalf("Stats = %+v", st)
	}
	raw.ws.Close()
	cl.Close()
	pollUntil(t, "the index to be empty", func() bool { st := n.ps.Stats(); return st.Subscriptions == 0 && st.Subscribers == 0 && st.Topics == 0 })
	if err := n.ps.Publish(ctx, []string{"orders"}, "anyone?"); err != nil {
		t.Fatal(err)
	}
	if st := n.ps.Stats(); st.Queued != 0 || st.Dropped != 0 {
		t.Errorf("Stats = %+v after publishing to nobody", st)
	}
}

// TestAuthorize: the hook refuses subscribing and publishing per
// connection and topic; the client tells the refusal apart
// (ErrForbidden, CodeForbidden), nothing of a refused call happens, and
// the connection lives on.
func TestAuthorize(t *testing.T) {
	ctx := ctxT(t)
	var asked sync.Map
	n := newNode(t, &Options{Authorize: func(_ context.Context, c *wsrpc.Conn, a Action, topic string) error {
		asked.Store(a.String()+" "+topic, true)
		if c.PathValue("client_id") == "admin" {
			return nil
		}
		switch {
		case a == ActionSubscribe && (topic == "secret" || topic == AllTopics):
			return errors.New("not for you")
		case a == ActionPublish && topic == "announcements":
			return &wsrpc.Error{Code: 4031, Message: "read-only topic"}
		}
		return nil
	}}, nil)

	user := dial(t, n.url+"/alice", nil)
	err := user.Subscribe(ctx, "secret", newCollector().handle)
	if !errors.Is(err, ErrForbidden) {
		t.Errorf("Subscribe(secret) = %v, want ErrForbidden", err)
	}
	if e, ok := errors.AsType[*wsrpc.Error](err); !ok || e.Code != CodeForbidden || e.Message != `forbidden: subscribe "secret"` {
		t.Errorf("Subscribe(secret) = %v, want code 403 and the topic named", err)
	}
	if got := user.Topics(); len(got) != 0 {
		t.Errorf("the refused subscription stayed: %v", got)
	}
	err = user.Subscribe(ctx, AllTopics, newCollector().handle)
	if !errors.Is(err, ErrForbidden) {
		t.Errorf("Subscribe(AllTopics) = %v, want ErrForbidden", err)
	}
	// A raw call with one refused topic among others subscribes nothing.
	raw := dialRaw(t, n.url+"/bob", false)
	f := raw.call(ctx, "subscribe", map[string]any{"topics": []string{"public", "secret"}})
	if f.Response == nil || f.Response.Error == nil || f.Response.Error.Code != CodeForbidden {
		t.Errorf("subscribe([public, secret]): %+v, want code 403", f.Response)
	}
	if got := n.ps.Topics(); len(got) != 0 {
		t.Errorf("Topics() = %v after a refused subscribe", got)
	}

	// A refused publish reaches nobody; the hook's own *Error goes as it is.
	admin := dial(t, n.url+"/admin", nil)
	c := newCollector()
	if err := admin.Subscribe(ctx, "announcements", c.handle); err != nil {
		t.Fatal(err)
	}
	err = user.Publish(ctx, []string{"announcements"}, "hi")
	if e, ok := errors.AsType[*wsrpc.Error](err); !ok || e.Code != 4031 {
		t.Errorf("Publish(announcements) = %v, want the hook's code 4031", err)
	}
	if errors.Is(err, ErrForbidden) {
		t.Errorf("a custom refusal matches ErrForbidden")
	}
	if err := admin.PublishWith(ctx, []string{"announcements"}, "from admin", PublishOptions{NotifierID: "x"}); err != nil {
		t.Fatal(err)
	}
	if ev := recv(ctx, t, c.ch, "the admin's event"); string(ev.Data) != `"from admin"` {
		t.Errorf("the refused publish went out: got %s first", ev.Data)
	}
	// The connections live on.
	if err := user.Subscribe(ctx, "public", newCollector().handle); err != nil {
		t.Errorf("Subscribe(public) after the refusals: %v", err)
	}
	for _, k := range []string{"subscribe secret", "subscribe " + AllTopics, "publish announcements"} {
		if _, ok := asked.Load(k); !ok {
			t.Errorf("the hook was not asked %q", k)
		}
	}
}

// TestServerSubscribe: a server-side subscription gets the events of its
// topics in order, one call at a time; a sync publish waits for it; stop
// ends it.
func TestServerSubscribe(t *testing.T) {
	ctx := ctxT(t)
	n := newNode(t, nil, nil)
	var running atomic.Int32
	entered, release := make(chan struct{}), make(chan struct{})
	got := make(chan int, 100)
	stop := n.ps.Subscribe([]string{"jobs"}, Typed(func(_ context.Context, _ string, v int) error {
		if running.Add(1) > 1 {
			t.Error("two calls at once")
		}
		defer running.Add(-1)
		if v == 0 {
			close(entered)
			<-release
		}
		got <- v
		return nil
	}))
	cl := dial(t, n.url, nil)
	published := make(chan error, 1)
	go func() { published <- cl.Publish(ctx, []string{"jobs"}, 0) }()
	// Checked once the function runs: checked at once, the publish could
	// not have returned yet in any case.
	recv(ctx, t, entered, "the subscription's function to run")
	select {
	case err := <-published:
		t.Fatalf("a sync publish returned (%v) before the subscription's function did", err)
	default:
	}
	close(release)
	if err := recv(ctx, t, published, "the sync publish"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 20; i++ {
		if err := n.ps.Publish(ctx, []string{"jobs"}, i); err != nil {
			t.Fatal(err)
		}
	}
	for want := range 20 {
		if v := recv(ctx, t, got, "a job"); v != want {
			t.Fatalf("got %d, want %d", v, want)
		}
	}
	stop()
	if n.ps.Topics()["jobs"] != 0 {
		t.Error("the subscription stayed after stop")
	}
	n.ps.Publish(ctx, []string{"jobs"}, 99)
	if st := n.ps.Stats(); st.Queued != 0 {
		t.Errorf("%d events queued after stop", st.Queued)
	}
}

// TestClose: a closed Server answers the pub/sub methods with
// ErrShuttingDown and refuses to publish.
func TestClose(t *testing.T) {
	ctx := ctxT(t)
	n := newNode(t, nil, nil)
	cl := dial(t, n.url, nil)
	n.ps.Close()
	if err := cl.Subscribe(ctx, "x", newCollector().handle); !errors.Is(err, wsrpc.ErrShuttingDown) {
		t.Errorf("Subscribe on a closed server: %v, want ErrShuttingDown", err)
	}
	if err := n.ps.Publish(ctx, []string{"x"}, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish on a closed server: %v, want ErrClosed", err)
	}
}

// TestOrderPipelined: one connection sends its publishes back to back
// without waiting for the answers (as loadgen and any pipelining client
// do); each subscriber gets them in the order they were sent, although
// RPC handlers run concurrently. A sync publish waiting for a subscriber
// that never answers does not hold back the connection's next publishes:
// every event reaches the others while all the publishes still wait (the
// SyncTimeout is an hour), and once the silent subscriber is gone every
// publish is answered.
func TestOrderPipelined(t *testing.T) {
	ctx := ctxT(t)
	n := newNode(t, &Options{SyncTimeout: time.Hour}, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{CallTimeout: time.Hour}})
	const count = 500
	var cols []*collector
	for range 3 {
		cl := dial(t, n.url, nil)
		c := newCollector()
		if err := cl.Subscribe(ctx, "t", c.handle); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, c)
	}
	silent := dialRaw(t, n.url, false)
	mustTrue(t, silent.call(ctx, "subscribe", map[string]any{"topics": []string{"t"}}), "subscribe")
	n.subscribed(t, "t", 4)

	pub := dialRaw(t, n.url, false)
	ids := map[string]bool{}
	for i := range count {
		ids[pub.request("publish", map[string]any{"topics": []string{"t"}, "data": i, "sync": true})] = true
	}
	for i, c := range cols {
		for want := range count {
			e := recv(ctx, t, c.ch, "an event")
			var got int
			if err := e.Decode(&got); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("subscriber %d: event %d arrived when %d was next", i, got, want)
			}
		}
	}
	// Every event came while every publish waits for the silent
	// subscriber; with it gone, each is answered.
	if st := n.ps.Stats(); st.Queued < count {
		t.Errorf("%d events queued or unanswered, want the silent subscriber's %d at least", st.Queued, count)
	}
	if len(pub.frames) != 0 {
		t.Fatalf("a sync publish was answered before the silent subscriber answered: %s", <-pub.frames)
	}
	silent.ws.Close()
	for len(ids) > 0 {
		f := pub.next(ctx)
		if f.Response == nil || f.Response.CallID == nil || !ids[*f.Response.CallID] {
			t.Fatalf("unexpected frame: %+v", f)
		}
		delete(ids, *f.Response.CallID)
	}
}

// TestCloseEndsUnansweredNotifies: Close ends the notifies still waiting
// for their answers (the Server's context is watched once per connection,
// not per notify): it returns long before the call timeout, and each of
// them counts as dropped. (The call timeout is an hour, so a Close that
// waited for it would outlast the test's context.) The same with
// Options.Trace, whose notifies are made with each event's own context
// made from the Server's, and with an Observer on the connections, whose
// CallStarted contexts are made from those. (TestObserverContextEndsNotify
// has a notify's context end before the Server's.)
func TestCloseEndsUnansweredNotifies(t *testing.T) {
	for _, tc := range []struct {
		name     string
		trace    bool
		observer bool
	}{{"plain", false, false}, {"trace", true, false}, {"observer", false, true}, {"trace and observer", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxT(t)
			opts := &Options{}
			if tc.trace {
				opts.Trace = testTrace{}
			}
			sopts := &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{CallTimeout: time.Hour}}
			if tc.observer {
				sopts.Observer = &notifyWatcher{got: make(chan Publication, 100)}
			}
			n := newNode(t, opts, sopts)
			const subs, events = 3, 5
			var raws []*rawConn
			for range subs {
				r := dialRaw(t, n.url, false)
				mustTrue(t, r.call(ctx, "subscribe", map[string]any{"topics": []string{"t"}}), "subscribe")
				raws = append(raws, r)
			}
			pubCtx := context.WithValue(ctx, traceKey{}, [2]string{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", ""})
			for i := range events {
				if err := n.ps.Publish(pubCtx, []string{"t"}, i); err != nil {
					t.Fatal(err)
				}
			}
			for _, r := range raws {
				for i := range events {
					if got, _ := r.nextNotify(ctx); string(got.Data) != strconv.Itoa(i) {
						t.Fatalf("notify %d: data %s", i, got.Data)
					}
				}
			}
			if st := n.ps.Stats(); st.Queued != subs*events {
				t.Fatalf("%d events queued or unanswered, want %d", st.Queued, subs*events)
			}
			closed := make(chan struct{})
			go func() {
				n.ps.Close()
				close(closed)
			}()
			select {
			case <-closed:
			case <-ctx.Done():
				t.Fatal("Close still waits for the unanswered notifies")
			}
			if st := n.ps.Stats(); st.Dropped != subs*events || st.Delivered != 0 {
				t.Errorf("dropped %d, delivered %d; want %d, 0", st.Dropped, st.Delivered, subs*events)
			}
		})
	}
}

// cancelObserver gives each notify a context of its own, made from the one
// CallStarted gets with a cancel, and hands over the cancel.
type cancelObserver struct {
	wsrpc.NopObserver
	cancels chan context.CancelFunc
}

func (o *cancelObserver) CallStarted(ctx context.Context, _ *wsrpc.Conn, ci *wsrpc.CallInfo) context.Context {
	if ci.Dir != wsrpc.Outbound || ci.Method != "notify" {
		return ctx
	}
	ctx, cancel := context.WithCancel(ctx)
	o.cancels <- cancel
	return ctx
}

// TestObserverContextEndsNotify: a notify whose context (here the one its
// connection's Observer returned) ends before the Server's ends then, as
// dropped, not at Close or at its call timeout (an hour).
func TestObserverContextEndsNotify(t *testing.T) {
	ctx := ctxT(t)
	obs := &cancelObserver{cancels: make(chan context.CancelFunc, 10)}
	n := newNode(t, nil, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{CallTimeout: time.Hour, Observer: obs}})
	r := dialRaw(t, n.url, false)
	mustTrue(t, r.call(ctx, "subscribe", map[string]any{"topics": []string{"t"}}), "subscribe")
	if err := n.ps.Publish(ctx, []string{"t"}, 1); err != nil {
		t.Fatal(err)
	}
	r.nextNotify(ctx)
	cancel := recv(ctx, t, obs.cancels, "the notify's cancel")
	cancel()
	pollUntil(t, "the notify to end", func() bool { return n.ps.Stats().Dropped == 1 })
}
