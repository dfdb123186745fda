package pubsub

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/internal/vectors"
)

// TestEnvelopeMember: the envelope's "wsrpc" member is added last, only
// when asked, and decoded back; without it the message is the Python
// broadcaster's, byte for byte; a "wsrpc" member that is not wsrpc's
// object is ignored, and the message accepted.
func TestEnvelopeMember(t *testing.T) {
	id, topic, data := quote("2be14311a5214c1f96545dd9c7aa5ac2"), quote("orders"), []byte(`{"id": 7}`)
	plain := appendEnvelope(nil, id, topic, data, nil)
	if want := `{"notifier_id": "2be14311a5214c1f96545dd9c7aa5ac2", "topics": ["orders"], "data": {"id": 7}}`; string(plain) != want {
		t.Errorf("without the member: %s\nwant %s", plain, want)
	}
	meta := brokerMeta{TimeNS: 1796345990000000000, TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", TraceState: `congo=t61rcWkgMzE,q="x"`}
	msg := appendEnvelope(nil, id, topic, data, &meta)
	want := `{"notifier_id": "2be14311a5214c1f96545dd9c7aa5ac2", "topics": ["orders"], "data": {"id": 7}, "wsrpc": {"time_ns": 1796345990000000000, "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "congo=t61rcWkgMzE,q=\"x\""}}`
	if string(msg) != want {
		t.Errorf("with the member: %s\nwant %s", msg, want)
	}
	e, err := decodeEnvelope(msg)
	if err != nil || e.meta != meta || string(e.Data) != string(data) {
		t.Errorf("decoded %+v, %v; want meta %+v", e, err, meta)
	}
	timeOnly := appendEnvelope(nil, id, topic, data, &brokerMeta{TimeNS: 5})
	if !bytes.HasSuffix(timeOnly, []byte(`, "wsrpc": {"time_ns": 5}}`)) {
		t.Errorf("time only: %s", timeOnly)
	}

	long := strings.Repeat("a", maxTraceField+1)
	for _, c := range []struct {
		member string
		want   brokerMeta
	}{
		{`"not an object"`, brokerMeta{}},
		{`{"time_ns": "soon", "traceparent": "00-x"}`, brokerMeta{}},
		{`null`, brokerMeta{}},
		{`{"time_ns": 9, "other": [1]}`, brokerMeta{TimeNS: 9}},
		{`{"time_ns": 9, "traceparent": "` + long + `"}`, brokerMeta{TimeNS: 9}},
	} {
		msg := `{"notifier_id": "n", "topics": ["t"], "data": 1, "wsrpc": ` + c.member + `}`
		e, err := decodeEnvelope([]byte(msg))
		if err != nil || e.meta != c.want || string(e.Data) != "1" {
			t.Errorf("%s: decoded %+v, %v; want meta %+v", c.member, e.meta, err, c.want)
		}
	}
}

// TestEnvelopeVectors replays testdata/envelope-vectors.jsonl, recorded by
// hand from wsrpc against a Python node (fastapi_websocket_pubsub's
// PubSubEndpoint with broadcaster on Redis; the README's "Pub/sub" says
// what ran): broker messages with the "wsrpc" member, as a wsrpc node
// publishes them and with a tracestate, and one without, and the notify
// the Python node sent its subscriber for each: the same as for a message
// without the member. wsrpc decodes each message, encodes the same JSON
// for the same event, and a wsrpc node notifies its subscriber with what
// the Python node sent.
func TestEnvelopeVectors(t *testing.T) {
	ctx := ctxT(t)
	vs := vectors.Read[pvector](t, "testdata/envelope-vectors.jsonl")
	broker := NewMemoryBroker()
	n := newNode(t, &Options{Broker: broker}, nil)
	sub := dialRaw(t, n.url, false)
	mustTrue(t, sub.call(ctx, "subscribe", map[string]any{"topics": []string{"orders"}}), "subscribe")
	ids := &idMap{fwd: map[string]string{}, rev: map[string]string{}}
	members := 0
	for i, v := range vs {
		if v.Frame == nil {
			t.Fatalf("line %d: no frame", i+1)
		}
		switch v.Direction {
		case "broker->server":
			e, err := decodeEnvelope([]byte(*v.Frame))
			if err != nil {
				t.Fatalf("%s: %v", v.Case, err)
			}
			var raw struct {
				WSRPC *brokerMeta `json:"wsrpc"`
			}
			json.Unmarshal([]byte(*v.Frame), &raw)
			var meta *brokerMeta
			if raw.WSRPC != nil {
				members++
				meta = raw.WSRPC
				if e.meta != *meta || e.meta.TimeNS <= 0 || !strings.HasPrefix(e.meta.TraceParent, "00-") {
					t.Errorf("%s: decoded member %+v, want %+v", v.Case, e.meta, *meta)
				}
			} else if e.meta != (brokerMeta{}) {
				t.Errorf("%s: member %+v decoded from none", v.Case, e.meta)
			}
			if got := appendEnvelope(nil, quote(e.NotifierID), quote(e.Topics[0]), e.Data, meta); !jsonEqual(*v.Frame, got) {
				t.Errorf("%s: encoded %s, recorded %s", v.Case, got, *v.Frame)
			}
			if err := broker.Publish(ctx, BrokerChannel, []byte(*v.Frame)); err != nil {
				t.Fatal(err)
			}
		case "server->client":
			f := recvFrame(t, sub, v.Case)
			if err := ids.sameFrame(*v.Frame, f); err != nil {
				t.Errorf("%s: %v", v.Case, err)
			}
			var fr frame
			json.Unmarshal(f, &fr)
			sub.answer(fr.Request.CallID)
		}
	}
	if members < 2 || len(vs) < 6 {
		t.Errorf("%d lines, %d with the member", len(vs), members)
	}
}

// testTrace is a wsrpc.TracePropagator on context values of its own:
// Inject returns the traceKey value's, Extract puts what it got under
// extractedKey.
type testTrace struct{}

type (
	traceKey     struct{}
	extractedKey struct{}
)

func (testTrace) Inject(ctx context.Context) (string, string) {
	v, _ := ctx.Value(traceKey{}).([2]string)
	return v[0], v[1]
}

func (testTrace) Extract(ctx context.Context, parent, state string) context.Context {
	return context.WithValue(ctx, extractedKey{}, [2]string{parent, state})
}

// notifyWatcher is a wsrpc.Observer that keeps the Publication of each
// notify it sees start.
type notifyWatcher struct {
	wsrpc.NopObserver
	got chan Publication // nil Publication.Topic: a notify had none
}

func (w *notifyWatcher) CallStarted(ctx context.Context, _ *wsrpc.Conn, ci *wsrpc.CallInfo) context.Context {
	if ci.Dir == wsrpc.Outbound && ci.Method == "notify" {
		p, _ := PublicationFromContext(ctx)
		w.got <- p
	}
	return ctx
}

// TestTraceCarried: with Options.Trace, an event's notifies start with a
// context carrying its Publication (the publisher's trace context, taken
// from the ctx of Server.Publish), on the publishing node and, through the
// broker, on another; a server-side subscription's function gets the
// Publication and the context Extract made. Without Trace a notify's
// context carries none.
func TestTraceCarried(t *testing.T) {
	ctx := ctxT(t)
	broker := NewMemoryBroker()
	watchA := &notifyWatcher{got: make(chan Publication, 10)}
	watchB := &notifyWatcher{got: make(chan Publication, 10)}
	watchC := &notifyWatcher{got: make(chan Publication, 10)}
	a := newNode(t, &Options{Broker: broker, Trace: testTrace{}}, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{Observer: watchA}})
	b := newNode(t, &Options{Broker: broker, Trace: testTrace{}}, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{Observer: watchB}})
	c := newNode(t, &Options{Broker: broker}, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{Observer: watchC}})
	var subs []*rawConn
	for _, n := range []*node{a, b, c} {
		sub := dialRaw(t, n.url, false)
		mustTrue(t, sub.call(ctx, "subscribe", map[string]any{"topics": []string{"orders"}}), "subscribe")
		subs = append(subs, sub)
	}
	type call struct {
		pub       Publication
		ok        bool
		extracted [2]string
	}
	calls := make(chan call, 1)
	stop := b.ps.Subscribe([]string{"orders"}, func(ctx context.Context, ev Event) error {
		p, ok := PublicationFromContext(ctx)
		x, _ := ctx.Value(extractedKey{}).([2]string)
		calls <- call{p, ok, x}
		return nil
	})
	defer stop()

	tc := [2]string{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "congo=t61rcWkgMzE"}
	if err := a.ps.Publish(context.WithValue(ctx, traceKey{}, tc), []string{"orders"}, 1); err != nil {
		t.Fatal(err)
	}
	for _, sub := range subs {
		_, id := sub.nextNotify(ctx)
		sub.answer(id)
	}
	want := Publication{Topic: "orders", TraceParent: tc[0], TraceState: tc[1]}
	for name, w := range map[string]*notifyWatcher{"the publishing node": watchA, "another node": watchB} {
		if got := recv(ctx, t, w.got, name+"'s notify"); got != want {
			t.Errorf("%s: notify's Publication %+v, want %+v", name, got, want)
		}
	}
	if got := recv(ctx, t, watchC.got, "the node without Trace's notify"); got != (Publication{}) {
		t.Errorf("a node without Trace: notify's context carries %+v", got)
	}
	if got := recv(ctx, t, calls, "the server-side subscription"); !got.ok || got.pub != want || got.extracted != tc {
		t.Errorf("server-side subscription: Publication %+v (%v), extracted %v; want %+v and %v", got.pub, got.ok, got.extracted, want, tc)
	}
}

// lagObserver keeps the lags it is told.
type lagObserver struct {
	NopObserver
	mu     sync.Mutex
	topics []string
	lags   []time.Duration
}

func (o *lagObserver) BrokerLag(topic string, lag time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.topics = append(o.topics, topic)
	o.lags = append(o.lags, lag)
}

func (o *lagObserver) take() ([]string, []time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	t, l := o.topics, o.lags
	o.topics, o.lags = nil, nil
	return t, l
}

// TestBrokerLag: a node with an Observer stamps its broker messages with
// the time, and a node with an Observer that receives one reports its lag,
// once per topic; a node with neither Observer nor Trace sends exactly the
// Python broadcaster's message, and messages without the time (a Python
// node's) are not measured. A message from the future counts as lag 0.
func TestBrokerLag(t *testing.T) {
	ctx := ctxT(t)
	broker := NewMemoryBroker()
	lags := &lagObserver{}
	receiver := NewServer(&Options{Broker: broker, Observer: lags, Logger: quiet()})
	defer receiver.Close()
	plain := NewServer(&Options{Broker: broker, Logger: quiet()})
	defer plain.Close()
	stamping := NewServer(&Options{Broker: broker, Observer: NopObserver{}, Logger: quiet()})
	defer stamping.Close()
	tap := make(chan []byte, 10)
	stopTap, _ := broker.Subscribe(ctx, BrokerChannel, func(msg []byte) { tap <- msg })
	defer stopTap()

	if err := plain.Publish(ctx, []string{"orders"}, 1); err != nil {
		t.Fatal(err)
	}
	if got, want := recv(ctx, t, tap, "the plain node's message"), appendEnvelope(nil, quote(plain.NodeID()), quote("orders"), []byte("1"), nil); !bytes.Equal(got, want) {
		t.Errorf("a node with neither Observer nor Trace sent %s, want %s", got, want)
	}
	if topics, _ := lags.take(); len(topics) != 0 {
		t.Errorf("lag reported for a message without the time: %v", topics)
	}

	before := time.Now()
	if err := stamping.Publish(ctx, []string{"orders", "news"}, 2); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		e, err := decodeEnvelope(recv(ctx, t, tap, "the stamping node's message"))
		if err != nil || e.meta.TimeNS < before.UnixNano() || e.meta.TraceParent != "" {
			t.Errorf("a stamping node's message: %+v, %v", e, err)
		}
	}
	topics, ds := lags.take()
	if strings.Join(topics, ",") != "orders,news" || ds[0] < 0 || ds[1] < 0 {
		t.Errorf("lags %v %v, want one per topic, orders then news, not negative", topics, ds)
	}

	future := time.Now().Add(time.Hour).UnixNano()
	broker.Publish(ctx, BrokerChannel, appendEnvelope(nil, quote("1f0e2d3c4b5a69788796a5b4c3d2e1f0"), quote("orders"), []byte("3"), &brokerMeta{TimeNS: future}))
	recv(ctx, t, tap, "the message from the future")
	if topics, ds := lags.take(); len(topics) != 1 || ds[0] != 0 {
		t.Errorf("a message from an hour ahead: lags %v, want one of 0", ds)
	}
}
