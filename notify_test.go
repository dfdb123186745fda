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
	dups []int         // tokens told twice
	all  chan struct{} // closed once want outcomes are in
	want int
}

func newNotifyLog(want int) *notifyLog {
	return &notifyLog{errs: map[int]error{}, all: make(chan struct{}), want: want}
}

// outcomes waits until every notify's outcome is in and returns them,
// failing the test if one was told twice.
func (l *notifyLog) outcomes(t *testing.T) map[int]error {
	t.Helper()
	await(t, l.all, time.Minute, "every notify's outcome")
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.dups) > 0 {
		t.Fatalf("NotifyDone told twice of notifies %v", l.dups)
	}
	return l.errs
}

func (l *notifyLog) NotifyDone(token any, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := token.(int)
	if _, dup := l.errs[i]; dup {
		l.dups = append(l.dups, i)
		return
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

// stalledNotifies connects a raw gorilla peer to a Server with opts and
// sends it n pub/sub notifies (internal/fanout's path, which package
// pubsub takes) of about 4 KiB each without waiting for room, as a
// publish does, while the peer reads nothing: the writer fills the socket
// and the rest wait in the send queue. It returns the peer, the server's
// side of the connection and the log of the notifies' outcomes.
func stalledNotifies(t *testing.T, opts *ServerOptions, n int) (*websocket.Conn, *Conn, *notifyLog) {
	t.Helper()
	srv := mustServer(t, NewMux(), opts)
	hs := wsHTTPServer(t, srv, false, nil)
	peer := rawDial(t, wsURLOf(hs, "/ws"))
	sc := serverConn(t, srv)
	log := newNotifyLog(n)
	pad := strings.Repeat("p", 4<<10)
	for i := range n {
		head := fmt.Appendf(nil, `{"i": %d`, i)
		tail := fmt.Appendf(nil, `, "pad": %q}`, pad)
		sent, err := fanout.Notify(sc, context.Background(), context.Background(), "notify", head, tail, false, log, i)
		if err != nil || !sent {
			t.Fatalf("notify %d: sent %v, %v (the send queue has room for all)", i, sent, err)
		}
	}
	return peer, sc, log
}

// TestNotifiesToStalledReader: pub/sub notifies to a subscriber that stops
// reading, more than the socket buffers hold, are queued without the
// publisher ever waiting; once it reads again it receives every one whole
// and in order, and its answers reach every notify's outcome. If it
// resets the connection instead, the connection ends and every notify is
// told so.
func TestNotifiesToStalledReader(t *testing.T) {
	const n = 4000 // 16 MB: more than loopback's socket buffers hold
	opts := &ServerOptions{ConnOptions: ConnOptions{Logger: quiet(), SendQueue: 2 * n, SendQueueBytes: 64 << 20, CallTimeout: time.Minute, WriteTimeout: time.Minute}}

	t.Run("read later", func(t *testing.T) {
		peer, sc, log := stalledNotifies(t, opts, n)
		peer.SetReadDeadline(time.Now().Add(time.Minute)) // against a hang
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
		for i, err := range log.outcomes(t) {
			if err != nil {
				t.Fatalf("notify %d: %v", i, err)
			}
		}
		// The connection is as good as new: the peer answers a call.
		var wg sync.WaitGroup
		defer wg.Wait() // after the peer is closed, should the call fail
		defer peer.Close()
		wg.Go(func() {
			var f notifyFrame
			if peer.ReadJSON(&f) == nil {
				peer.WriteJSON(map[string]any{"response": map[string]any{"result": "ok", "result_type": "str", "call_id": f.Request.CallID}})
			}
		})
		if got, err := Call[string](ctxT(t), sc, "anything", nil); err != nil || got != "ok" {
			t.Fatalf("a call after the notifies: %q, %v", got, err)
		}
	})

	t.Run("reset", func(t *testing.T) {
		peer, sc, log := stalledNotifies(t, opts, n)
		if err := peer.NetConn().(*net.TCPConn).SetLinger(0); err != nil {
			t.Fatal(err)
		}
		peer.Close() // a reset, with what the server wrote unread
		await(t, sc.Done(), time.Minute, "the connection's end")
		lost := 0
		for _, err := range log.outcomes(t) {
			if err != nil {
				lost++
			}
		}
		if lost != n {
			t.Fatalf("%d of %d notifies succeeded, none was answered", n-lost, n)
		}
	})
}
