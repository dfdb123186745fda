package wsrpc

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsrpc/wsrpc/internal/fanout"
)

// notifyLog is a fanout.Done that records each notify's outcome by its
// token, an int.
type notifyLog struct {
	mu   sync.Mutex
	errs map[int]error
	all  chan struct{} // closed once want outcomes are in
	want int
}

func newNotifyLog(want int) *notifyLog {
	return &notifyLog{errs: map[int]error{}, all: make(chan struct{}), want: want}
}

func (l *notifyLog) NotifyDone(token any, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := token.(int)
	if _, dup := l.errs[i]; dup {
		panic(fmt.Sprintf("notify %d: NotifyDone called twice", i))
	}
	l.errs[i] = err
	if len(l.errs) == l.want {
		close(l.all)
	}
}

// notifyFrame is what a raw peer reads of a notify's request.
type notifyFrame struct {
	Request struct {
		Method    string `json:"method"`
		Arguments struct {
			I   int    `json:"i"`
			Pad string `json:"pad"`
		} `json:"arguments"`
		CallID string `json:"call_id"`
	} `json:"request"`
}

// sendNotifies sends n pub/sub notifies (internal/fanout's path, which
// package pubsub takes) of about 4 KiB each to the peer of sc without
// waiting for room, as a publish does, while the peer reads nothing: the
// writer fills the socket, one frame only in part, and the rest wait in
// the send queue.
func sendNotifies(t *testing.T, sc *Conn, n int, log *notifyLog) {
	t.Helper()
	pad := strings.Repeat("p", 4<<10)
	for i := range n {
		head := fmt.Appendf(nil, `{"i": %d`, i)
		tail := fmt.Appendf(nil, `, "pad": %q}`, pad)
		sent, err := fanout.Notify(sc, context.Background(), context.Background(), "notify", head, tail, false, log, i)
		if err != nil || !sent {
			t.Fatalf("notify %d: sent %v, %v (the send queue has room for all)", i, sent, err)
		}
	}
}

// TestNotifiesToStalledReader: pub/sub notifies to a subscriber that stops
// reading are queued without the publisher ever waiting; once it reads
// again it receives every one whole and in order, the one the socket
// took only in part included, and its answers reach every notify's
// outcome. If it resets the connection instead, the connection ends and
// every notify is told so.
func TestNotifiesToStalledReader(t *testing.T) {
	const n = 4000 // 16 MB: more than loopback's socket buffers hold
	opts := &ServerOptions{ConnOptions: ConnOptions{Logger: quiet(), SendQueue: 2 * n, SendQueueBytes: 64 << 20, CallTimeout: time.Minute, WriteTimeout: time.Minute}}

	t.Run("read later", func(t *testing.T) {
		srv := mustServer(t, NewMux(), opts)
		hs := wsHTTPServer(t, srv, false, nil)
		peer, _, err := websocket.DefaultDialer.DialContext(ctxT(t), wsURLOf(hs, "/ws"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer peer.Close()
		sc := serverConn(t, srv)
		log := newNotifyLog(n)
		sendNotifies(t, sc, n, log)

		for i := range n {
			var f notifyFrame
			if err := peer.ReadJSON(&f); err != nil {
				t.Fatalf("reading notify %d: %v", i, err)
			}
			r := f.Request
			if r.Method != "notify" || r.Arguments.I != i || len(r.Arguments.Pad) != 4<<10 || r.CallID == "" {
				t.Fatalf("frame %d: method %q, i %d, %d bytes of padding, call id %q", i, r.Method, r.Arguments.I, len(r.Arguments.Pad), r.CallID)
			}
			resp := map[string]any{"request": nil, "response": map[string]any{"result": i, "result_type": "int", "call_id": r.CallID}}
			if err := peer.WriteJSON(resp); err != nil {
				t.Fatal(err)
			}
		}
		await(t, log.all, time.Minute, "every notify's outcome")
		for i, err := range log.errs {
			if err != nil {
				t.Fatalf("notify %d: %v", i, err)
			}
		}
		// The connection is as good as new: a call both ways.
		go func() {
			var f struct {
				Request struct {
					CallID string `json:"call_id"`
				} `json:"request"`
			}
			if peer.ReadJSON(&f) == nil {
				peer.WriteJSON(map[string]any{"response": map[string]any{"result": "ok", "result_type": "str", "call_id": f.Request.CallID}})
			}
		}()
		if got, err := Call[string](ctxT(t), sc, "anything", nil); err != nil || got != "ok" {
			t.Fatalf("a call after the notifies: %q, %v", got, err)
		}
	})

	t.Run("reset", func(t *testing.T) {
		srv := mustServer(t, NewMux(), opts)
		hs := wsHTTPServer(t, srv, false, nil)
		peer, _, err := websocket.DefaultDialer.DialContext(ctxT(t), wsURLOf(hs, "/ws"), nil)
		if err != nil {
			t.Fatal(err)
		}
		sc := serverConn(t, srv)
		log := newNotifyLog(n)
		sendNotifies(t, sc, n, log)
		if err := peer.NetConn().(*net.TCPConn).SetLinger(0); err != nil {
			t.Fatal(err)
		}
		peer.Close() // a reset, with what the server wrote unread
		await(t, sc.Done(), time.Minute, "the connection's end")
		await(t, log.all, time.Minute, "every notify's outcome")
		lost := 0
		for _, err := range log.errs {
			if err != nil {
				lost++
			}
		}
		if lost != n {
			t.Fatalf("%d of %d notifies succeeded, none was answered", n-lost, n)
		}
	})
}
