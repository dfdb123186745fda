package wsrpc

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestAppendFloat: floats are written as encoding/json writes them, with a
// fractional part added where it has none.
func TestAppendFloat(t *testing.T) {
	for _, f := range []float64{0, 1, -3, 3.5, 1e-7, 1.5e-9, 1e21, 123456789, 1e20, -0.000001, math.MaxFloat64, math.SmallestNonzeroFloat64} {
		for _, bits := range []int{32, 64} {
			v := f
			var std []byte
			if bits == 32 {
				if math.Abs(f) > math.MaxFloat32 {
					continue
				}
				std, _ = json.Marshal(float32(f))
				v = float64(float32(f))
			} else {
				std, _ = json.Marshal(f)
			}
			got, typ, err := appendFloat(nil, v, bits)
			want := string(std)
			if !strings.ContainsAny(want, ".eE") {
				want += ".0"
			}
			if err != nil || typ != "float" || string(got) != want {
				t.Errorf("appendFloat(%v, %d) = %s, %q, %v; want %s", f, bits, got, typ, err, want)
			}
		}
	}
	if _, _, err := appendFloat(nil, math.NaN(), 64); err == nil {
		t.Error("NaN encoded")
	}
}

// TestHandleOrdered: the calls of ordered methods on one connection run one
// at a time, in the order their requests arrived, even when each takes a
// different time; a call of another method runs while an ordered one
// blocks.
func TestHandleOrdered(t *testing.T) {
	ctx := ctxT(t)
	const n = 300
	var (
		mu      sync.Mutex
		seen    []int
		running atomic.Int32
		overlap atomic.Bool
	)
	release := make(chan struct{})
	mux := utilMux()
	mux.HandleOrdered("ev", HandlerFunc(func(_ context.Context, args json.RawMessage) (any, error) {
		if running.Add(1) > 1 {
			overlap.Store(true)
		}
		defer running.Add(-1)
		var a struct{ N int }
		if err := json.Unmarshal(args, &a); err != nil {
			return nil, err
		}
		if a.N == 0 {
			<-release // the first holds the others back
		}
		for range a.N % 7 {
			runtime.Gosched() // each takes its own time
		}
		mu.Lock()
		seen = append(seen, a.N)
		mu.Unlock()
		return nil, nil
	}))
	_, u := testServer(t, mux, nil)
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	for i := range n {
		req := fmt.Sprintf(`{"request": {"method": "ev", "arguments": {"n": %d}, "call_id": "o%d"}, "response": null}`, i, i)
		if err := ws.WriteMessage(websocket.TextMessage, []byte(req)); err != nil {
			t.Fatal(err)
		}
	}
	// While the ordered calls wait, another method still answers.
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"request": {"method": "echo", "arguments": {"text": "x"}, "call_id": "e"}}`)); err != nil {
		t.Fatal(err)
	}
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, msg, err := ws.ReadMessage()
	if err != nil || !strings.Contains(string(msg), `"call_id":"e"`) {
		t.Fatalf("first answer %s, %v; want echo's while the ordered calls wait", msg, err)
	}
	close(release)
	for range n {
		if _, _, err := ws.ReadMessage(); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i, v := range seen {
		if v != i {
			t.Fatalf("ordered calls ran in the order %v, want 0..%d", seen, n-1)
		}
	}
	if len(seen) != n {
		t.Errorf("%d ordered calls ran, want %d", len(seen), n)
	}
	if overlap.Load() {
		t.Error("two ordered calls ran at once")
	}
}

// TestPassTurn: an ordered handler that passes its turn on lets the next
// ordered calls start while it still runs; the ones before it stay in
// order.
func TestPassTurn(t *testing.T) {
	ctx := ctxT(t)
	const n = 50
	var (
		mu   sync.Mutex
		seen []int
	)
	release := make(chan struct{})
	mux := utilMux()
	mux.HandleOrdered("ev", HandlerFunc(func(ctx context.Context, args json.RawMessage) (any, error) {
		var a struct{ N int }
		if err := json.Unmarshal(args, &a); err != nil {
			return nil, err
		}
		mu.Lock()
		seen = append(seen, a.N)
		mu.Unlock()
		if a.N == 0 {
			PassTurn(ctx)
			<-release // the others run meanwhile
		}
		return nil, nil
	}))
	_, u := testServer(t, mux, nil)
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	for i := range n {
		req := fmt.Sprintf(`{"request": {"method": "ev", "arguments": {"n": %d}, "call_id": "o%d"}, "response": null}`, i, i)
		if err := ws.WriteMessage(websocket.TextMessage, []byte(req)); err != nil {
			t.Fatal(err)
		}
	}
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := 1; i < n; i++ { // all but the first answer while it waits
		_, msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if want := fmt.Sprintf(`"call_id":"o%d"`, i); !strings.Contains(string(msg), want) {
			t.Fatalf("answer %s; want %s", msg, want)
		}
	}
	close(release)
	if _, msg, err := ws.ReadMessage(); err != nil || !strings.Contains(string(msg), `"call_id":"o0"`) {
		t.Fatalf("last answer %s, %v; want o0's", msg, err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, v := range seen {
		if v != i {
			t.Fatalf("calls ran in the order %v", seen)
		}
	}
}

// TestMuxMethods: Methods lists every method registered, however it was
// registered, sorted, and a nil Mux has none; a name registered twice
// panics and leaves the list as it was.
func TestMuxMethods(t *testing.T) {
	var none *Mux
	if got := none.Methods(); got != nil {
		t.Errorf("a nil Mux's Methods() = %v, want nil", got)
	}
	m := NewMux()
	if got := m.Methods(); len(got) != 0 {
		t.Errorf("a new Mux's Methods() = %v", got)
	}
	Register(m, "zeta", func(context.Context, struct{}) (int, error) { return 1, nil })
	m.HandleFunc("alpha", func(context.Context, json.RawMessage) (any, error) { return nil, nil })
	m.HandleOrdered("mid", HandlerFunc(func(context.Context, json.RawMessage) (any, error) { return nil, nil }))
	want := []string{"alpha", "mid", "zeta"}
	if got := m.Methods(); !slices.Equal(got, want) {
		t.Errorf("Methods() = %v, want %v", got, want)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("registering alpha twice did not panic")
			}
		}()
		m.HandleFunc("alpha", func(context.Context, json.RawMessage) (any, error) { return nil, nil })
	}()
	if got := m.Methods(); !slices.Equal(got, want) {
		t.Errorf("after the refused registration, Methods() = %v, want %v", got, want)
	}
}
