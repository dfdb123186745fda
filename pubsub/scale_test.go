package pubsub

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/internal/services"
)

// TestManyConnections: 10,000 connections subscribe (to 100 topics and
// AllTopics) and close, in batches of 500 open at once, while the
// application publishes; afterwards the topic index is empty, and the
// server's goroutines and heap are back near where they were.
func TestManyConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 10,000 connections")
	}
	// A liveness bound only, and a generous one: with the race detector
	// on a loaded 2-core machine 10,000 handshakes take a while.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	n := newNode(t, nil, nil)
	const total, batch, workers = 10000, 500, 8

	open := func(i int) (*websocket.Conn, error) {
		ws, _, err := websocket.DefaultDialer.DialContext(ctx, n.url, nil)
		if err != nil {
			return nil, err
		}
		req := fmt.Sprintf(`{"request": {"method": "subscribe", "arguments": {"topics": ["t%d", "%s"]}, "call_id": "c%d"}}`, i%100, AllTopics, i)
		if err := ws.WriteMessage(websocket.TextMessage, []byte(req)); err != nil {
			ws.Close()
			return nil, err
		}
		for { // the answer, past any notify
			if d, ok := ctx.Deadline(); ok {
				ws.SetReadDeadline(d)
			}
			_, msg, err := ws.ReadMessage()
			if err != nil {
				ws.Close()
				return nil, err
			}
			if strings.Contains(string(msg), `"call_id": "c`+fmt.Sprint(i)+`"`) || strings.Contains(string(msg), `"call_id":"c`+fmt.Sprint(i)+`"`) {
				return ws, nil
			}
		}
	}
	run := func(from, to int) {
		conns := make([]*websocket.Conn, to-from)
		var wg sync.WaitGroup
		next := make(chan int)
		for range workers {
			wg.Go(func() {
				for i := range next {
					ws, err := open(i)
					if err != nil {
						t.Errorf("connection %d: %v", i, err)
						continue
					}
					conns[i-from] = ws
				}
			})
		}
		for i := from; i < to; i++ {
			next <- i
		}
		close(next)
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		if st := n.ps.Stats(); st.Subscribers < to-from {
			t.Fatalf("%d subscribers with %d connections open", st.Subscribers, to-from)
		}
		// Events in flight to connections that are closing.
		if err := n.ps.Publish(ctx, []string{"t0"}, "bye"); err != nil {
			t.Fatal(err)
		}
		for _, ws := range conns {
			ws.Close()
		}
	}
	// Warm up, then measure the baseline.
	run(0, batch)
	settle(t, n)
	base := measure()
	for from := batch; from < total; from += batch {
		run(from, from+batch)
	}
	settle(t, n)
	after := measure()
	if st := n.ps.Stats(); st.Topics != 0 || st.Subscriptions != 0 || st.Subscribers != 0 || st.Queued != 0 {
		t.Errorf("after 10,000 connections came and went: %+v", st)
	}
	if d := after.goroutines - base.goroutines; d > 10 {
		t.Errorf("%d goroutines more than the baseline", d)
	}
	if d := int64(after.heap) - int64(base.heap); d > 4<<20 {
		t.Errorf("the heap is %d KiB above the baseline", d>>10)
	}
	t.Logf("baseline: %d goroutines, %d KiB heap; after: %d goroutines, %d KiB heap", base.goroutines, base.heap>>10, after.goroutines, after.heap>>10)
}

// settle waits until the node has no connection and no subscriber left.
func settle(t *testing.T, n *node) {
	t.Helper()
	pollUntil(t, "every connection to be gone", func() bool {
		st := n.ps.Stats()
		return len(n.srv.Conns()) == 0 && st.Subscribers == 0 && st.Topics == 0
	})
}

type usage struct {
	goroutines int
	heap       uint64
}

// measure returns the goroutines and the live heap, once the goroutines
// of connections just closed have had their moment to end. It leaves out
// the idle workers of wsrpc's pool, which linger a few seconds, however
// many a burst of calls started.
func measure() usage {
	var u usage
	for range 50 {
		runtime.GC()
		g := goroutines()
		if g == u.goroutines {
			break
		}
		u.goroutines = g
		time.Sleep(10 * time.Millisecond)
	}
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	u.heap = m.HeapAlloc
	return u
}

// goroutines counts the goroutines other than idle workers.
func goroutines() int {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, "(*workers).loop") {
			n++
		}
	}
	return n
}

// TestResubscribeAfterRestart: the server restarts on the same port; the
// client reconnects and subscribes again to its topics before its new
// connection serves the application, and gets the events published there.
func TestResubscribeAfterRestart(t *testing.T) {
	ctx := ctxT(t)
	// A port below the ephemeral range: one from listen(":0"), once
	// closed, could be taken meanwhile as the source port of any
	// connection, of this process or another test binary's.
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(services.FreePort(t)))
	first := newNodeAt(t, addr)
	cl := dial(t, first.url, &ClientOptions{DialOptions: wsrpc.DialOptions{Retry: wsrpc.RetryOptions{InitialInterval: 10 * time.Millisecond, MaxInterval: 50 * time.Millisecond}}})
	c := newCollector()
	for _, topic := range []string{"a", "b"} {
		if err := cl.Subscribe(ctx, topic, c.handle); err != nil {
			t.Fatal(err)
		}
	}
	old := cl.RPC().Conn()
	first.close()

	second := newNodeAt(t, addr)
	pollUntil(t, "the client to be back", func() bool { c := cl.RPC().Conn(); return c != nil && c != old })
	// Ready means subscribed again.
	if got := second.ps.Topics(); got["a"] != 1 || got["b"] != 1 {
		t.Fatalf("the client's new connection is ready, the server's topics are %v", got)
	}
	for _, topic := range []string{"a", "b"} {
		if err := second.ps.Publish(ctx, []string{topic}, topic); err != nil {
			t.Fatal(err)
		}
		if ev := recv(ctx, t, c.ch, "an event after the restart"); ev.Topic != topic {
			t.Errorf("got %q, want %q", ev.Topic, topic)
		}
	}
}

// newNodeAt is newNode listening on addr.
func newNodeAt(t *testing.T, addr string) *node {
	t.Helper()
	var ln net.Listener
	var err error
	for range 100 { // the port may take a moment to be free again
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	n := &node{ps: NewServer(&Options{Logger: quiet()})}
	mux := wsrpc.NewMux()
	if n.srv, err = wsrpc.NewServer(mux, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{Logger: quiet()}}); err != nil {
		t.Fatal(err)
	}
	n.ps.Register(n.srv, mux)
	n.hs = httptest.NewUnstartedServer(n.srv)
	n.hs.Listener.Close()
	n.hs.Listener = ln
	n.hs.Start()
	n.url = "ws://" + ln.Addr().String() + "/pubsub"
	t.Cleanup(n.close)
	return n
}
