package redisbroker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/internal/brokertest"
	"github.com/wsrpc/wsrpc/internal/services"
	"github.com/wsrpc/wsrpc/internal/vectors"
	"github.com/wsrpc/wsrpc/pubsub"
)

// vector is one line of ../pubsub/testdata/pubsub-vectors.jsonl, frames
// recorded from fastapi_websocket_pubsub on permit-broadcaster's Redis.
type vector struct {
	Case      string  `json:"case"`
	Direction string  `json:"direction"`
	FrameType string  `json:"frame_type"`
	Frame     *string `json:"frame"`
	Conn      string  `json:"conn"`
}

func loadVectors(t *testing.T) []vector {
	t.Helper()
	return vectors.Read[vector](t, "../pubsub/testdata/pubsub-vectors.jsonl")
}

// recordedNodeA is the notifier id of the node the recorder called A.
const recordedNodeA = "d6469fdc1ac4433aaf9eec737b4c5dba"

// tap subscribes a raw go-redis client to pubsub.BrokerChannel, as a
// Python node's broadcaster does, and returns what comes.
func tap(t *testing.T, ctx context.Context, rc *redis.Client) <-chan *redis.Message {
	t.Helper()
	ps := rc.Subscribe(ctx, pubsub.BrokerChannel)
	t.Cleanup(func() { ps.Close() })
	if _, err := ps.Receive(ctx); err != nil { // the subscribe's reply
		t.Fatal(err)
	}
	return ps.Channel()
}

func rawClient(t *testing.T, srv *services.Server) *redis.Client {
	t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rc.Close() })
	return rc
}

// subscribed tells when a pub/sub node is subscribed to its broker.
type subscribed struct {
	pubsub.NopObserver
	ch chan struct{}
}

func (o *subscribed) Broker(err error) {
	if err == nil {
		select {
		case o.ch <- struct{}{}:
		default:
		}
	}
}

// node starts a pub/sub node on broker b and waits until it subscribed to
// it.
func node(ctx context.Context, t *testing.T, b wsrpc.Broker) *brokertest.Node {
	t.Helper()
	obs := &subscribed{ch: make(chan struct{}, 1)}
	n := brokertest.NewNode(t, b, obs)
	select {
	case <-obs.ch:
	case <-ctx.Done():
		t.Fatal("the node never subscribed to the broker")
	}
	return n
}

// collector gathers the events of a client's subscription.
type collector chan pubsub.Event

func (c collector) handle(_ context.Context, ev pubsub.Event) error {
	c <- ev
	return nil
}

// until returns the data of the events before the one with data end.
func (c collector) until(ctx context.Context, t *testing.T, end string) []string {
	t.Helper()
	var got []string
	for {
		select {
		case ev := <-c:
			if string(ev.Data) == end {
				return got
			}
			got = append(got, string(ev.Data))
		case <-ctx.Done():
			t.Fatalf("waiting for %s: got %q so far: %v", end, got, ctx.Err())
		}
	}
}

// TestVectorsRedis replays the recorded Redis cases of
// fastapi_websocket_pubsub on three pub/sub nodes: A (its notifier id in
// place of the recorded one) and B, each on a Broker of its own on one
// redis-server, and C with no broker (the recorder's register_route node).
// A raw Redis client stands for the Python side: it taps EventNotifier and
// injects the recorded messages. A publish on A puts exactly the recorded
// messages on EventNotifier (as JSON, one per topic); an injected one
// reaches the subscribers it reached in the recording, and no other (not
// A's own, not a malformed one); C puts nothing on Redis. After each case
// a marker checks that nothing else came.
func TestVectorsRedis(t *testing.T) {
	ctx := brokertest.Ctx(t)
	srv := services.Redis(t)
	rc := rawClient(t, srv)
	taps := tap(t, ctx, rc)
	nodes := map[string]*brokertest.Node{
		"A": node(ctx, t, dial(t, srv, nil)),
		"B": node(ctx, t, dial(t, srv, nil)),
		"C": brokertest.NewNode(t, pubsub.NewMemoryBroker(), nil),
	}
	idA := nodes["A"].PubSub.NodeID()
	subs := map[string]collector{}
	clients := map[string]*pubsub.Client{}
	client := func(conn string) *pubsub.Client {
		if c := clients[conn]; c != nil {
			return c
		}
		n := nodes[conn[strings.LastIndex(conn, "@")+1:]]
		c := brokertest.Dial(t, n.URL)
		clients[conn] = c
		return c
	}

	var cases []string
	byCase := map[string][]vector{}
	for _, v := range loadVectors(t) {
		if !strings.HasPrefix(v.Case, "redis-") {
			continue
		}
		if byCase[v.Case] == nil {
			cases = append(cases, v.Case)
		}
		byCase[v.Case] = append(byCase[v.Case], v)
	}
	for _, want := range []string{"redis-publish", "redis-publish-multi-topic", "redis-inject", "redis-register-route-bypasses-broadcaster"} {
		if byCase[want] == nil {
			t.Fatalf("no recorded case %s", want)
		}
	}

	for i, name := range cases {
		var injected, wantBroker []string
		wantEvents := map[string][]string{} // by subscriber conn
		for _, v := range byCase[name] {
			if v.Frame == nil {
				continue // a recorded silence: the markers check it
			}
			frame := strings.ReplaceAll(*v.Frame, recordedNodeA, idA)
			switch {
			case v.Conn == "redis" && v.Direction == "broker->server":
				injected = append(injected, frame)
				if err := rc.Publish(ctx, pubsub.BrokerChannel, frame).Err(); err != nil {
					t.Fatal(err)
				}
			case v.Conn == "redis":
				wantBroker = append(wantBroker, frame)
			case v.Direction == "client->server":
				var f struct {
					Request *struct {
						Method    string `json:"method"`
						Arguments struct {
							Topics []string        `json:"topics"`
							Data   json.RawMessage `json:"data"`
						} `json:"arguments"`
					} `json:"request"`
				}
				if err := json.Unmarshal([]byte(frame), &f); err != nil {
					t.Fatal(err)
				}
				if f.Request == nil {
					continue // a notify's answer: the client gives it
				}
				switch a := f.Request.Arguments; f.Request.Method {
				case "subscribe":
					c := make(collector, 16)
					for _, topic := range a.Topics {
						if err := client(v.Conn).Subscribe(ctx, topic, c.handle); err != nil {
							t.Fatal(err)
						}
					}
					subs[v.Conn] = c
				case "publish":
					if err := client(v.Conn).Publish(ctx, a.Topics, a.Data); err != nil {
						t.Fatalf("%s: publish: %v", name, err)
					}
				default:
					t.Fatalf("%s: unexpected request %s", name, f.Request.Method)
				}
			case v.Direction == "server->client":
				var f struct {
					Request *struct {
						Method    string `json:"method"`
						Arguments struct {
							Data json.RawMessage `json:"data"`
						} `json:"arguments"`
					} `json:"request"`
				}
				if err := json.Unmarshal([]byte(frame), &f); err != nil {
					t.Fatal(err)
				}
				if f.Request != nil && f.Request.Method == "notify" {
					wantEvents[v.Conn] = append(wantEvents[v.Conn], string(f.Request.Arguments.Data))
				}
			}
		}

		// The markers: on Redis for A and B (and the tap), through C's
		// own publisher for C.
		end := fmt.Sprintf(`"end of case %d"`, i)
		marker := fmt.Sprintf(`{"notifier_id": "0123456789abcdef0123456789abcdef", "topics": ["orders"], "data": %s}`, end)
		if err := rc.Publish(ctx, pubsub.BrokerChannel, marker).Err(); err != nil {
			t.Fatal(err)
		}
		if subs["sub@C"] != nil {
			if err := client("pub@C").Publish(ctx, []string{"orders"}, json.RawMessage(end)); err != nil {
				t.Fatal(err)
			}
		}
		var gotBroker []string
	tapping:
		for {
			select {
			case m := <-taps:
				if m.Payload == marker {
					break tapping
				}
				if !slices.Contains(injected, m.Payload) {
					gotBroker = append(gotBroker, withoutMember(t, m.Payload))
				}
			case <-ctx.Done():
				t.Fatalf("%s: the marker never came back from Redis", name)
			}
		}
		if !sameJSON(gotBroker, wantBroker) {
			t.Errorf("%s: on EventNotifier: %q\nrecorded: %q", name, gotBroker, wantBroker)
		}
		for conn, c := range subs {
			got := c.until(ctx, t, end)
			if !sameJSON(got, wantEvents[conn]) {
				t.Errorf("%s: %s got %q, recorded %q", name, conn, got, wantEvents[conn])
			}
		}
	}
}

// sameJSON reports whether a and b hold the same JSON texts, by meaning,
// in any order.
// withoutMember returns a broker message of a Go node without the
// "wsrpc" member that a node with a pub/sub Observer adds (the nodes here
// have one, to tell when they are subscribed), after checking it: an
// object with the publish time, and no trace context (no Trace is set).
// What is left is what the Python node sends.
func withoutMember(t *testing.T, msg string) string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(msg), &m); err != nil {
		return msg // sameJSON reports it
	}
	member, ok := m["wsrpc"]
	if !ok {
		t.Errorf("broker message without a wsrpc member from a node with an Observer: %s", msg)
		return msg
	}
	var w map[string]any
	if err := json.Unmarshal(member, &w); err != nil || len(w) != 1 || w["time_ns"] == nil {
		t.Errorf("broker message's wsrpc member is %s, want {\"time_ns\": …}", member)
	}
	delete(m, "wsrpc")
	b, _ := json.Marshal(m)
	return string(b)
}

func sameJSON(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	norm := func(ss []string) []string {
		var out []string
		for _, s := range ss {
			var v any
			if err := json.Unmarshal([]byte(s), &v); err != nil {
				out = append(out, "invalid: "+s)
				continue
			}
			b, _ := json.Marshal(v)
			out = append(out, string(b))
		}
		slices.Sort(out)
		return out
	}
	return reflect.DeepEqual(norm(a), norm(b))
}
