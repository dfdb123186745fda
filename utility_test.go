package wsrpc

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// tracked returns how many connections have utility state.
func (u *utilities) tracked() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.conns)
}

// stats returns c's pending callbacks and kept responses.
func (u *utilities) stats(c *Conn) (pending, kept int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.conns[c]
	if s == nil {
		return 0, 0
	}
	return s.pending, len(s.stored)
}

// rawFrame is a frame as a raw client reads it.
type rawFrame struct {
	Request *struct {
		Method string `json:"method"`
	} `json:"request"`
	Response *struct {
		CallID string `json:"call_id"`
		Error  *Error `json:"error"`
	} `json:"response"`
}

func readRawFrame(t *testing.T, ws *websocket.Conn) rawFrame {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var f rawFrame
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("frame %s: %v", data, err)
	}
	return f
}

// TestCallMeBackPendingLimit: a peer that reads call_me_back's calls and
// never answers them gets maxPendingCallbacks of them at once; every
// call_me_back over that is refused at once with CodeServerError. The
// server's goroutines stay bounded, and when the peer disconnects they end
// and the connection's utility state is dropped.
func TestCallMeBackPendingLimit(t *testing.T) {
	m := NewMux()
	u := registerUtilities(m)
	// No call timeout: only the limit ends the callbacks.
	srv, url := testServer(t, m, &ServerOptions{CallTimeout: -1})
	ws := rawDial(t, url)
	sc := serverConn(t, srv)
	before := runtime.NumGoroutine()

	const n = 10 * maxPendingCallbacks
	accepted, refused, callbacks := 0, 0, 0
	for i := range n {
		id := fmt.Sprintf("trigger-%d", i)
		frame := fmt.Sprintf(`{"request": {"method": "call_me_back", "arguments": {"method_name": "never_answered", "args": {}}, "call_id": %q}, "response": null}`, id)
		if err := ws.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
			t.Fatal(err)
		}
		for { // callbacks may come before the answer; read them, never answer
			f := readRawFrame(t, ws)
			if f.Request != nil {
				callbacks++
				continue
			}
			if f.Response == nil || f.Response.CallID != id {
				t.Fatalf("frame %+v, want the answer to %s", f, id)
			}
			if e := f.Response.Error; e == nil {
				accepted++
			} else if e.Code == CodeServerError {
				refused++
			} else {
				t.Fatalf("call_me_back %d: error %d %q, want %d", i, e.Code, e.Message, CodeServerError)
			}
			break
		}
	}
	if accepted != maxPendingCallbacks || refused != n-maxPendingCallbacks {
		t.Errorf("accepted %d, refused %d; want %d, %d", accepted, refused, maxPendingCallbacks, n-maxPendingCallbacks)
	}
	for callbacks < accepted {
		if f := readRawFrame(t, ws); f.Request != nil {
			callbacks++
		}
	}
	if p, _ := u.stats(sc); p != maxPendingCallbacks {
		t.Errorf("%d callbacks pending, want %d", p, maxPendingCallbacks)
	}
	// One goroutine per pending callback, and a few idle workers.
	if g := runtime.NumGoroutine(); g > before+maxPendingCallbacks+maxPendingCallbacks/2 {
		t.Errorf("%d goroutines, %d before %d call_me_back calls", g, before, n)
	}

	ws.Close()
	select {
	case <-sc.Done(): // every callback goroutine has returned
	case <-ctxT(t).Done():
		t.Fatal("the connection did not end")
	}
	waitFor(t, func() bool { return u.tracked() == 0 })
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before+maxPendingCallbacks/4 })
}
