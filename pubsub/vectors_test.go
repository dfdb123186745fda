package pubsub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/wsrpc/wsrpc/internal/vectors"
)

// pvector is one line of testdata/pubsub-vectors.jsonl: a frame recorded
// from fastapi_websocket_pubsub (a copy of
// ../shared/protocol/pubsub-vectors.jsonl).
type pvector struct {
	Case      string  `json:"case"`
	Direction string  `json:"direction"`
	FrameType string  `json:"frame_type"`
	Frame     *string `json:"frame"`
	Conn      string  `json:"conn"`
}

func loadPubsubVectors(t *testing.T) []pvector {
	t.Helper()
	vs := vectors.Read[pvector](t, "testdata/pubsub-vectors.jsonl")
	if len(vs) < 150 {
		t.Fatalf("only %d vectors", len(vs))
	}
	return vs
}

// recordedNodeA is the notifier id of the node the recorder called A.
const recordedNodeA = "d6469fdc1ac4433aaf9eec737b4c5dba"

// idMap pairs the ids the recorded server made (subscriptions,
// subscribers, notify call ids) with those wsrpc makes, one to one.
type idMap struct{ fwd, rev map[string]string }

func (m *idMap) bind(rec, act any) error {
	r, ok1 := rec.(string)
	a, ok2 := act.(string)
	if !ok1 || !ok2 {
		return fmt.Errorf("id %v arrived as %v", rec, act)
	}
	if prev, ok := m.fwd[r]; ok && prev != a {
		return fmt.Errorf("recorded id %s is %s here, and now %s", r, prev, a)
	}
	if prev, ok := m.rev[a]; ok && prev != r {
		return fmt.Errorf("id %s stands for recorded %s, and now for %s", a, prev, r)
	}
	m.fwd[r], m.rev[a] = a, r
	return nil
}

// sameFrame compares a frame with the recorded one by meaning, binding the
// server-made ids of a notify.
func (m *idMap) sameFrame(recorded string, actual []byte) error {
	var exp, act map[string]any
	if err := json.Unmarshal([]byte(recorded), &exp); err != nil {
		return err
	}
	if err := json.Unmarshal(actual, &act); err != nil {
		return fmt.Errorf("frame %s: %v", actual, err)
	}
	if req, ok := exp["request"].(map[string]any); ok && req["method"] == "notify" {
		areq, ok := act["request"].(map[string]any)
		if !ok {
			return fmt.Errorf("got %s, want a notify", actual)
		}
		if err := m.bind(req["call_id"], areq["call_id"]); err != nil {
			return err
		}
		areq["call_id"] = req["call_id"]
		esub := req["arguments"].(map[string]any)["subscription"].(map[string]any)
		aargs, _ := areq["arguments"].(map[string]any)
		asub, _ := aargs["subscription"].(map[string]any)
		if asub == nil {
			return fmt.Errorf("notify without subscription: %s", actual)
		}
		for _, k := range []string{"id", "subscriber_id"} {
			if err := m.bind(esub[k], asub[k]); err != nil {
				return fmt.Errorf("subscription.%s: %v", k, err)
			}
			asub[k] = esub[k]
		}
	}
	if !reflect.DeepEqual(exp, act) {
		return fmt.Errorf("got %s\nwant %s", actual, recorded)
	}
	return nil
}

// TestVectorsServer replays every recorded RPC frame between FWP's server
// and its clients against wsrpc's Server, in the recorded order, one
// connection per recorded conn, across four nodes: one alone (most cases),
// A and B sharing a MemoryBroker (the "redis" cases, whose broker lines
// are checked on that broker), and C alone. Server-made ids are paired
// with the recorded ones one to one. Where FWP is flawed, wsrpc does
// better, and the replay expects that instead:
//   - a second subscriber of a topic is notified at once, not after the
//     first answered (publish-subscribers-one-after-another);
//   - a sync publish to the publisher's own subscription is answered (FWP
//     deadlocks: publish-own-events-foreign-notifier-id-sync);
//   - the server never asks the client's channel id, so it cannot leak
//     subscriptions under it (remote-id-connect).
func TestVectorsServer(t *testing.T) {
	ctx := ctxT(t)
	vs := loadPubsubVectors(t)
	broker := NewMemoryBroker()
	nodes := map[string]*node{
		"main": newNode(t, &Options{SyncTimeout: 3 * time.Second}, nil),
		"A":    newNode(t, &Options{Broker: broker, NodeID: recordedNodeA}, nil),
		"B":    newNode(t, &Options{Broker: broker}, nil),
		"C":    newNode(t, nil, nil),
	}
	nodeOf := func(conn string) string {
		for _, n := range []string{"A", "B", "C"} {
			if strings.HasSuffix(conn, "@"+n) {
				return n
			}
		}
		return "main"
	}
	// The broker's traffic, less what the test injects.
	tap := make(chan []byte, 64)
	injected := map[string]bool{}
	stopTap, _ := broker.Subscribe(ctx, BrokerChannel, func(msg []byte) {
		if !injected[string(msg)] {
			tap <- msg
		}
	})
	defer stopTap()

	last := map[string]int{} // each conn's last line: it closes after
	for i, v := range vs {
		last[v.Conn] = i
	}
	conns := map[string]*rawConn{}
	subscribers := map[string]map[string]bool{} // by node, the conns holding subscriber state
	ids := &idMap{fwd: map[string]string{}, rev: map[string]string{}}
	brokerSeen := map[int]bool{}
	get := func(name string) *rawConn {
		if c := conns[name]; c != nil {
			return c
		}
		c := dialRaw(t, nodes[nodeOf(name)].url, false)
		conns[name] = c
		return c
	}
	silent := func(c *rawConn, what string) {
		t.Helper()
		select {
		case b := <-c.frames:
			t.Errorf("%s: got %s, want no frame", what, b)
		case <-time.After(50 * time.Millisecond):
		}
	}
	replayed := 0
	early := map[string][]byte{} // by conn, a frame that came before the one recorded before it
	for i, v := range vs {
		what := fmt.Sprintf("line %d (%s, %s, %s)", i+1, v.Case, v.Conn, v.Direction)
		switch {
		case v.Conn == "pubsubclient":
			continue // TestVectorsClient
		case v.Case == "remote-id-connect":
			continue // wsrpc's server asks no channel id
		case v.Case == "publish-subscribers-one-after-another" && v.Conn == "sub-2" && v.Frame == nil:
			continue // wsrpc notifies sub-2 at once (TestNotifiesInParallel)
		}
		replayed++
		switch {
		case v.Conn == "redis" && v.Direction == "broker->server":
			injected[*v.Frame] = true
			if err := broker.Publish(ctx, BrokerChannel, []byte(*v.Frame)); err != nil {
				t.Fatal(err)
			}
		case v.Conn == "redis" && v.Frame == nil:
			select {
			case b := <-tap:
				t.Errorf("%s: broker message %s, want none", what, b)
			case <-time.After(50 * time.Millisecond):
			}
		case v.Conn == "redis":
			// One message per topic, in either order within the case.
			var b []byte
			select {
			case b = <-tap:
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: no broker message", what)
			}
			matched := false
			for j, w := range vs {
				if w.Case == v.Case && w.Conn == "redis" && w.Direction == "server->broker" && !brokerSeen[j] && jsonEqual(*w.Frame, b) {
					brokerSeen[j], matched = true, true
					break
				}
			}
			if !matched {
				t.Errorf("%s: broker message %s matches none recorded", what, b)
			}
		case v.Direction == "client->server":
			c := get(v.Conn)
			f := *v.Frame
			var env struct {
				Request *struct {
					Method    string     `json:"method"`
					Arguments topicsArgs `json:"arguments"`
				} `json:"request"`
				Response *struct {
					CallID string `json:"call_id"`
				} `json:"response"`
			}
			if err := json.Unmarshal([]byte(f), &env); err != nil {
				t.Fatal(err)
			}
			if env.Response != nil { // a notify's answer: the call id is ours
				act, ok := ids.fwd[env.Response.CallID]
				if !ok {
					t.Fatalf("%s: answer to a notify that never came", what)
				}
				f = strings.Replace(f, env.Response.CallID, act, 1)
			}
			if env.Request != nil && env.Request.Method == "subscribe" && len(env.Request.Arguments.Topics) > 0 {
				n := nodeOf(v.Conn)
				if subscribers[n] == nil {
					subscribers[n] = map[string]bool{}
				}
				subscribers[n][v.Conn] = true
			}
			c.send(f)
		case v.Frame == nil: // a recorded silence
			if v.Case == "publish-own-events-foreign-notifier-id-sync" {
				// FWP deadlocks here, before it notifies sub's second
				// subscription to users; wsrpc notifies it, and answers
				// the publish once it is answered.
				c := conns[v.Conn]
				for {
					b := recvFrame(t, c, what)
					var f frame
					json.Unmarshal(b, &f)
					if f.Request != nil && f.Request.Method == "notify" {
						c.answer(f.Request.CallID)
						continue
					}
					if err := ids.sameFrame(`{"request": null, "response": {"result": true, "result_type": "bool", "call_id": "62dcd7818410f9420eea9614c57d4847"}}`, b); err != nil {
						t.Errorf("%s: %v", what, err)
					}
					break
				}
				break
			}
			silent(get(v.Conn), what)
		default:
			c := get(v.Conn)
			b, stashed := early[v.Conn], early[v.Conn] != nil
			delete(early, v.Conn)
			if !stashed {
				b = recvFrame(t, c, what)
			}
			err := ids.sameFrame(*v.Frame, b)
			if err != nil && !stashed && strings.HasSuffix(v.Case, "-async") {
				// publish(sync=false) answers at once, and the publisher's
				// own notify may come before or after the answer: FWP's
				// came after, wsrpc promises no order between the two.
				next := recvFrame(t, c, what)
				if ids.sameFrame(*v.Frame, next) == nil {
					early[v.Conn], err = b, nil
				}
			}
			if err != nil {
				t.Errorf("%s: %v", what, err)
			}
		}
		if last[v.Conn] == i && conns[v.Conn] != nil {
			// The recorder's conn left: close ours, and wait until its
			// node forgot its subscriptions (a sync publish would wait
			// for it otherwise).
			conns[v.Conn].ws.Close()
			n := nodeOf(v.Conn)
			delete(subscribers[n], v.Conn)
			want := len(subscribers[n])
			pollUntil(t, v.Conn+" to be forgotten", func() bool { return nodes[n].ps.Stats().Subscribers == want })
		}
	}
	for _, n := range nodes {
		if st := n.ps.Stats(); st.Subscribers != 0 || st.Topics != 0 {
			t.Errorf("a node kept subscriptions after every conn left: %+v", st)
		}
	}
	for conn, b := range early {
		t.Errorf("%s: frame %s came early, and was never recorded", conn, b)
	}
	if replayed < 120 {
		t.Errorf("replayed %d lines only", replayed)
	}
}

// recvFrame returns the next frame of c, failing the test after 10 s.
func recvFrame(t *testing.T, c *rawConn, what string) []byte {
	t.Helper()
	select {
	case b, ok := <-c.frames:
		if !ok {
			t.Fatalf("%s: the connection ended: %v", what, c.readErr())
		}
		return b
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no frame", what)
		return nil
	}
}

func jsonEqual(a string, b []byte) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// TestVectorsBroker: every recorded broker message decodes as the Python
// broadcaster meant it (compact JSON, several topics, data missing as
// null; "not json" refused), and what wsrpc encodes for the recorded
// publishes means the same JSON.
func TestVectorsBroker(t *testing.T) {
	n := 0
	for _, v := range loadPubsubVectors(t) {
		if v.FrameType != "redis" {
			continue
		}
		n++
		e, err := decodeEnvelope([]byte(*v.Frame))
		if *v.Frame == "not json" {
			if !errors.Is(err, errBadEnvelope) {
				t.Errorf("%s: decode = %v, want errBadEnvelope", v.Case, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", v.Case, err)
			continue
		}
		var want struct {
			NotifierID string          `json:"notifier_id"`
			Topics     []string        `json:"topics"`
			Data       json.RawMessage `json:"data"`
		}
		json.Unmarshal([]byte(*v.Frame), &want)
		if want.Data == nil {
			want.Data = rawNull
		}
		if e.NotifierID != want.NotifierID || !slices.Equal(e.Topics, want.Topics) || !jsonEqual(string(want.Data), e.Data) {
			t.Errorf("%s: decoded %+v from %s", v.Case, e, *v.Frame)
		}
		if v.Direction == "server->broker" {
			// wsrpc's encoding of the same event means the same JSON.
			if len(e.Topics) != 1 {
				t.Fatalf("%s: a recorded publish with %d topics", v.Case, len(e.Topics))
			}
			got := appendEnvelope(nil, quote(e.NotifierID), quote(e.Topics[0]), e.Data, nil)
			if !jsonEqual(*v.Frame, got) {
				t.Errorf("%s: encoded %s, recorded %s", v.Case, got, *v.Frame)
			}
		}
	}
	if n < 7 {
		t.Errorf("only %d broker lines", n)
	}
}

// TestVectorsClient plays the recorded server's side to wsrpc's Client:
// its subscribe, publish (both forms) and unsubscribe frames mean what
// PubSubClient's meant, it answers notifies as PubSubClient does (also for
// a topic without handler), and when the server closes the connection it
// reconnects and subscribes again before it serves the application. (The
// _ping_ PubSubClient sends on each connect is the Python client's own
// keep-alive; wsrpc's sends it on its keep-alive interval.)
func TestVectorsClient(t *testing.T) {
	ctx := ctxT(t)
	var lines []pvector
	for _, v := range loadPubsubVectors(t) {
		if v.Conn == "pubsubclient" {
			lines = append(lines, v)
		}
	}
	accepted := make(chan *websocket.Conn, 2)
	up := websocket.Upgrader{}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ws, err := up.Upgrade(w, r, nil); err == nil {
			accepted <- ws
		}
	}))
	defer hs.Close()

	got := make(chan Event, 4)
	turn := make(chan string)
	script := make(chan error, 1)
	var last *websocket.Conn // the script's last connection, open until the test ends
	go func() {
		var err error
		last, err = playClient(ctx, lines, accepted, turn)
		script <- err
	}()
	defer func() {
		if last != nil {
			last.Close()
		}
	}()

	cl := dial(t, "ws"+strings.TrimPrefix(hs.URL, "http"), nil)
	for c := range turn {
		var err error
		switch c {
		case "client-connect":
			err = cl.Subscribe(ctx, "orders", func(_ context.Context, ev Event) error { got <- ev; return nil })
		case "client-subscribe-after-connect":
			err = cl.Subscribe(ctx, "users", func(context.Context, Event) error { return nil })
		case "client-publish":
			err = cl.Publish(ctx, []string{"orders"}, json.RawMessage(`{"id": 7, "items": ["tea", "café"], "price": 2.5, "paid": true, "note": null}`))
		case "client-publish-all-arguments":
			err = cl.PublishWith(ctx, []string{"orders", "users"}, "x", PublishOptions{NoSync: true, NotifierID: "my-notifier"})
		case "client-unsubscribe":
			ev := recv(ctx, t, got, "the notify's event")
			if ev.Topic != "orders" || !jsonEqual(`{"id": 7, "items": ["tea", "café"], "price": 2.5, "paid": true, "note": null}`, ev.Data) {
				t.Errorf("the handler got %+v", ev)
			}
			err = cl.Unsubscribe(ctx, "users")
		}
		if err != nil {
			t.Errorf("%s: %v", c, err)
		}
	}
	if err := recv(ctx, t, script, "the recorded server's script"); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "the client to be ready on the new connection", func() bool { return cl.RPC().Conn() != nil })
	if got := cl.Topics(); !slices.Equal(got, []string{"orders"}) {
		t.Errorf("Topics() = %v", got)
	}
}

// playClient plays the recorded server's lines to a client; it tells the
// test, through turn, when the client must act, and closes turn at the
// end. It returns its last connection, open.
func playClient(ctx context.Context, lines []pvector, accepted <-chan *websocket.Conn, turn chan<- string) (ws *websocket.Conn, err error) {
	defer close(turn)
	defer func() {
		if err != nil && ws != nil {
			ws.Close()
			ws = nil
		}
	}()
	accept := func() error {
		select {
		case ws = <-accepted:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("no connection: %w", ctx.Err())
		}
	}
	if err := accept(); err != nil {
		return nil, err
	}
	callIDs := map[string]string{} // recorded call id → the client's
	acts := map[string]bool{"client-connect": true, "client-subscribe-after-connect": true, "client-publish": true,
		"client-publish-all-arguments": true, "client-unsubscribe": true}
	prev := ""
	for _, v := range lines {
		if v.Case != prev {
			prev = v.Case
			if acts[v.Case] {
				turn <- v.Case
			}
		}
		if v.Frame != nil && strings.Contains(*v.Frame, `"_ping_"`) {
			continue
		}
		var rec frame
		if v.Frame != nil {
			json.Unmarshal([]byte(*v.Frame), &rec)
		}
		if rec.Response != nil && rec.Response.ResultType == "str" && string(rec.Response.Result) == `"pong"` {
			continue // the answer to _ping_
		}
		switch {
		case v.FrameType == "close 1000":
			ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(time.Second))
			ws.Close()
			if err := accept(); err != nil {
				return nil, err
			}
		case v.Direction == "client->server":
			ws.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, b, err := ws.ReadMessage()
			if err != nil {
				return ws, fmt.Errorf("%s: %w", v.Case, err)
			}
			var f frame
			json.Unmarshal(b, &f)
			if f.Request != nil && f.Request.Method == "_ping_" {
				return ws, fmt.Errorf("%s: unexpected _ping_", v.Case)
			}
			switch {
			case rec.Request != nil:
				if f.Request == nil || f.Request.Method != rec.Request.Method || !jsonEqual(string(rec.Request.Arguments), f.Request.Arguments) {
					return ws, fmt.Errorf("%s: the client sent %s, recorded %s", v.Case, b, *v.Frame)
				}
				if len(f.Request.CallID) != 32 {
					return ws, fmt.Errorf("%s: call id %q is not 32 hex digits", v.Case, f.Request.CallID)
				}
				callIDs[rec.Request.CallID] = f.Request.CallID
			default: // the answer to a notify, under the recorded call id
				if !jsonEqual(*v.Frame, b) {
					return ws, fmt.Errorf("%s: the client answered %s, recorded %s", v.Case, b, *v.Frame)
				}
			}
		default:
			out := *v.Frame
			if rec.Response != nil {
				out = strings.Replace(out, *rec.Response.CallID, callIDs[*rec.Response.CallID], 1)
			}
			if err := ws.WriteMessage(websocket.TextMessage, []byte(out)); err != nil {
				return ws, fmt.Errorf("%s: %w", v.Case, err)
			}
		}
	}
	return ws, nil
}
