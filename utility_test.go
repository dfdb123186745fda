package wsrpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
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

// stats returns c's pending callbacks, kept responses and their bytes.
func (u *utilities) stats(c *Conn) (pending, kept, bytes int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.conns[c]
	if s == nil {
		return 0, 0, 0
	}
	return s.pending, len(s.stored), s.bytes
}

// keptResponse is get_response's result.
type keptResponse struct {
	Result     json.RawMessage `json:"result"`
	ResultType string          `json:"result_type"`
	CallID     string          `json:"call_id"`
	Error      *Error          `json:"error"`
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
// call_me_back over that is refused at once with ErrTooManyCalls. The
// server's goroutines stay bounded, and when the peer disconnects they end
// and the connection's utility state is dropped.
func TestCallMeBackPendingLimit(t *testing.T) {
	m := NewMux()
	u := registerUtilities(m)
	// No call timeout: only the limit ends the callbacks.
	srv, url := testServer(t, m, &ServerOptions{ConnOptions: ConnOptions{CallTimeout: -1}})
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
			} else if errors.Is(e, ErrTooManyCalls) {
				refused++
			} else {
				t.Fatalf("call_me_back %d: %v, want %v", i, e, ErrTooManyCalls)
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
	if p, _, _ := u.stats(sc); p != maxPendingCallbacks {
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

// TestCallMeBackStoredBytes: kept responses stay within maxStoredBytes,
// the oldest going first, and a pending slot is freed by each answer.
func TestCallMeBackStoredBytes(t *testing.T) {
	m := NewMux()
	u := registerUtilities(m)
	srv, url := testServer(t, m, nil)
	big := strings.Repeat("x", 256<<10)
	cm := NewMux()
	Register(cm, "big", func(_ context.Context, a struct {
		N int `json:"n"`
	}) (string, error) {
		return fmt.Sprintf("%04d", a.N) + big, nil
	})
	cl := testDial(t, url, &DialOptions{Methods: cm})
	sc := serverConn(t, srv)
	ctx := ctxT(t)

	const n = maxPendingCallbacks + 16 // more than the pending limit, in turn
	ids := make([]string, n)
	for i := range n {
		id, err := Call[string](ctx, cl, "call_me_back", map[string]any{"method_name": "big", "args": map[string]any{"n": i}})
		if err != nil {
			t.Fatalf("call_me_back %d: %v", i, err)
		}
		ids[i] = id
		// Kept before the next one starts: the order kept is the order here.
		waitFor(t, func() bool { p, _, _ := u.stats(sc); return p == 0 })
		if _, _, b := u.stats(sc); b > maxStoredBytes {
			t.Fatalf("after %d responses of %d KiB, %d bytes kept, over %d", i+1, len(big)>>10, b, maxStoredBytes)
		}
	}
	_, kept, _ := u.stats(sc)
	if least := maxStoredBytes / (len(big) + 1024); kept < least || kept >= n {
		t.Fatalf("%d responses kept, want from %d to %d", kept, least, n-1)
	}
	for i, id := range ids {
		r, err := Call[keptResponse](ctx, cl, "get_response", map[string]any{"call_id": id})
		if i < n-kept { // evicted
			if e, ok := errors.AsType[*Error](err); !ok || e.Code != CodeInvalidParams {
				t.Errorf("get_response of evicted response %d: %v, want a CodeInvalidParams error", i, err)
			}
			continue
		}
		var s string
		if err != nil {
			t.Errorf("get_response %d: %v", i, err)
		} else if json.Unmarshal(r.Result, &s); s != fmt.Sprintf("%04d", i)+big || r.ResultType != "str" || r.CallID != id {
			t.Errorf("get_response %d: %.40s… (%d bytes) %q %q", i, r.Result, len(r.Result), r.ResultType, r.CallID)
		}
	}
	if p, k, b := u.stats(sc); p != 0 || k != 0 || b != 0 {
		t.Errorf("after every get_response: %d pending, %d kept, %d bytes; want none", p, k, b)
	}
}

// TestCallMeBackOversizedResponse: a response larger than maxStoredBytes on
// its own is kept as a CodeServerError error response, and evicts nothing.
func TestCallMeBackOversizedResponse(t *testing.T) {
	m := NewMux()
	u := registerUtilities(m)
	srv, url := testServer(t, m, &ServerOptions{ConnOptions: ConnOptions{MaxMessageSize: 2 * maxStoredBytes}})
	cm := NewMux()
	Register(cm, "sized", func(_ context.Context, a struct {
		N int `json:"n"`
	}) (string, error) {
		return strings.Repeat("x", a.N), nil
	})
	cl := testDial(t, url, &DialOptions{Methods: cm})
	sc := serverConn(t, srv)
	ctx := ctxT(t)

	ids := make([]string, 2)
	for i, size := range []int{10, maxStoredBytes + 1} {
		id, err := Call[string](ctx, cl, "call_me_back", map[string]any{"method_name": "sized", "args": map[string]any{"n": size}})
		if err != nil {
			t.Fatalf("call_me_back(%d bytes): %v", size, err)
		}
		ids[i] = id
		waitFor(t, func() bool { p, _, _ := u.stats(sc); return p == 0 })
	}
	if _, kept, b := u.stats(sc); kept != 2 || b > 1024 {
		t.Errorf("%d responses kept, %d bytes; want 2, under 1 KiB", kept, b)
	}
	r, err := Call[keptResponse](ctx, cl, "get_response", map[string]any{"call_id": ids[1]})
	if err != nil {
		t.Fatalf("get_response of the oversized response: %v", err)
	}
	if r.ResultType != "error" || r.Error == nil || r.Error.Code != CodeServerError || string(r.Result) != "null" || r.CallID != ids[1] {
		t.Errorf("get_response of the oversized response: %.80s %q %+v, want a CodeServerError error response", r.Result, r.ResultType, r.Error)
	}
	r, err = Call[keptResponse](ctx, cl, "get_response", map[string]any{"call_id": ids[0]})
	if err != nil || string(r.Result) != `"xxxxxxxxxx"` {
		t.Errorf("get_response of the small response: %+v, %v", r, err)
	}
}
