package wsrpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

type textArgs struct {
	Text string `json:"text"`
}

func echoMux() *Mux {
	m := NewMux()
	RegisterUtilities(m)
	return m
}

// TestConcurrentBothWays runs 1,000 calls each way at once on one
// connection; every call gets its own answer.
func TestConcurrentBothWays(t *testing.T) {
	const n = 1000
	srv, url := testServer(t, echoMux(), nil)
	cl := testDial(t, url, &DialOptions{Methods: echoMux()})
	sc := serverConn(t, srv)
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		for _, c := range []Caller{cl, sc} {
			wg.Go(func() {
				want := fmt.Sprintf("call %d via %T", i, c)
				got, err := Call[string](ctx, c, "echo", textArgs{want})
				if err != nil {
					errs <- err
				} else if got != want {
					errs <- fmt.Errorf("got %q, want %q", got, want)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestSlowHandlerBlocksNothing: while one handler waits, other calls both
// ways complete, and its own answer arrives when it is released.
func TestSlowHandlerBlocksNothing(t *testing.T) {
	release := make(chan struct{})
	m := echoMux()
	Register(m, "slow", func(ctx context.Context, _ struct{}) (string, error) {
		select {
		case <-release:
			return "done", nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	})
	srv, url := testServer(t, m, nil)
	cl := testDial(t, url, &DialOptions{Methods: echoMux()})
	ctx := ctxT(t)
	slow := make(chan error, 1)
	go func() {
		_, err := Call[string](ctx, cl, "slow", nil)
		slow <- err
	}()
	for i := range 100 {
		if _, err := Call[string](ctx, cl, "echo", textArgs{"x"}); err != nil {
			t.Fatal(i, err)
		}
		if _, err := Call[string](ctx, serverConn(t, srv), "echo", textArgs{"y"}); err != nil {
			t.Fatal(i, err)
		}
	}
	select {
	case err := <-slow:
		t.Fatalf("slow call returned before release: %v", err)
	default:
	}
	close(release)
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
}

// TestNestedCalls: the client calls the server, whose handler calls the
// client, whose handler calls the server: three deep, and then deeper.
func TestNestedCalls(t *testing.T) {
	type depthArgs struct {
		Depth int `json:"depth"`
	}
	// bounce calls "bounce" on the peer with depth-1 and appends its side.
	bounce := func(side string) *Mux {
		m := echoMux()
		Register(m, "bounce", func(ctx context.Context, a depthArgs) ([]string, error) {
			if a.Depth == 0 {
				return []string{side}, nil
			}
			rest, err := Call[[]string](ctx, ConnFromContext(ctx), "bounce", depthArgs{a.Depth - 1})
			if err != nil {
				return nil, err
			}
			return append([]string{side}, rest...), nil
		})
		return m
	}
	_, url := testServer(t, bounce("server"), nil)
	cl := testDial(t, url, &DialOptions{Methods: bounce("client")})
	ctx := ctxT(t)
	got, err := Call[[]string](ctx, cl, "bounce", depthArgs{2})
	if want := []string{"server", "client", "server"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("three deep: %v, %v; want %v", got, err, want)
	}
	got, err = Call[[]string](ctx, cl, "bounce", depthArgs{49})
	if err != nil || len(got) != 50 {
		t.Fatalf("fifty deep: %d sides, %v", len(got), err)
	}
	// Many nested chains at once.
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if got, err := Call[[]string](ctx, cl, "bounce", depthArgs{9}); err != nil || len(got) != 10 {
				t.Errorf("parallel chain: %d, %v", len(got), err)
			}
		})
	}
	wg.Wait()
}

// TestRemoteErrors: a handler's *Error reaches the caller as is; another
// error becomes an internal error; a panic too, and the connection lives.
func TestRemoteErrors(t *testing.T) {
	var log errorLog
	m := NewMux()
	Register(m, "typed", func(context.Context, struct{}) (int, error) {
		return 0, &Error{Code: 42, Message: "no luck", Data: json.RawMessage(`{"retry":true}`)}
	})
	Register(m, "plain", func(context.Context, struct{}) (int, error) { return 0, errors.New("disk full") })
	Register(m, "explode", func(context.Context, struct{}) (int, error) { panic("kaboom") })
	Register(m, "fine", func(context.Context, struct{}) (int, error) { return 7, nil })
	_, url := testServer(t, m, &ServerOptions{ConnOptions: ConnOptions{OnError: log.hook}})
	cl := testDial(t, url, nil)
	ctx := ctxT(t)

	_, err := Call[int](ctx, cl, "typed", nil)
	var e *Error
	if !errors.As(err, &e) || e.Code != 42 || e.Message != "no luck" || string(e.Data) != `{"retry":true}` {
		t.Errorf("typed: %v", err)
	}
	_, err = Call[int](ctx, cl, "plain", nil)
	if !errors.As(err, &e) || e.Code != CodeInternalError || e.Message != "internal error" {
		t.Errorf("plain: %v (its text must not reach the peer by default)", err)
	}
	if !log.hasText("disk full") {
		t.Error("OnError did not get the plain error")
	}
	_, err = Call[int](ctx, cl, "explode", nil)
	if !errors.As(err, &e) || e.Code != CodeInternalError || strings.Contains(e.Message, "kaboom") {
		t.Errorf("panic: %v (the panic value must not leak to the peer)", err)
	}
	if !log.hasPanic("explode") {
		t.Error("OnError got no *PanicError")
	}
	if got, err := Call[int](ctx, cl, "fine", nil); err != nil || got != 7 {
		t.Errorf("after the errors: %v, %v", got, err)
	}
	if !strings.Contains(err.Error(), `call "explode"`) {
		t.Errorf("error %q does not name the method", err)
	}
}

// TestTimeouts: a call times out by its context, or by the default call
// timeout; the error wraps context.DeadlineExceeded; the next call works.
func TestTimeouts(t *testing.T) {
	m := echoMux()
	Register(m, "hang", func(ctx context.Context, _ struct{}) (bool, error) {
		<-ctx.Done()
		return false, ctx.Err()
	})
	_, url := testServer(t, m, nil)
	cl := testDial(t, url, &DialOptions{ConnOptions: ConnOptions{CallTimeout: 50 * time.Millisecond}})
	ctx, cancel := context.WithTimeout(ctxT(t), 30*time.Millisecond)
	defer cancel()
	if err := cl.Call(ctx, "hang", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ctx deadline: %v", err)
	}
	if err := cl.Call(context.Background(), "hang", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("default timeout: %v", err)
	}
	ctx2, cancel2 := context.WithCancel(ctxT(t))
	cancel2()
	if err := cl.Call(ctx2, "echo", textArgs{"x"}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled ctx: %v", err)
	}
	if got, err := Call[string](ctxT(t), cl, "echo", textArgs{"after"}); err != nil || got != "after" {
		t.Errorf("after timeouts: %q, %v", got, err)
	}
}

// TestCancelPropagates: over the negotiated extension, a caller that gives
// up cancels the handler on the other side, through a nested chain, and the
// deadline travels with the call.
func TestCancelPropagates(t *testing.T) {
	deadlineSeen := make(chan time.Duration, 1)
	clientCanceled := make(chan error, 1)
	serverCanceled := make(chan error, 1)
	waiting := make(chan struct{}, 1)
	cm := NewMux()
	Register(cm, "wait", func(ctx context.Context, _ struct{}) (bool, error) {
		waiting <- struct{}{}
		<-ctx.Done()
		clientCanceled <- context.Cause(ctx)
		return false, ctx.Err()
	})
	sm := NewMux()
	Register(sm, "relay", func(ctx context.Context, _ struct{}) (bool, error) {
		err := ConnFromContext(ctx).Call(ctx, "wait", nil, nil)
		serverCanceled <- err
		return false, err
	})
	Register(sm, "deadline", func(ctx context.Context, _ struct{}) (bool, error) {
		dl, ok := ctx.Deadline()
		if !ok {
			dl = time.Time{}
		}
		deadlineSeen <- time.Until(dl)
		return ok, nil
	})
	srv, url := testServer(t, sm, nil)
	cl := testDial(t, url, &DialOptions{Methods: cm})
	if !cl.Conn().ext {
		t.Fatal("extension not negotiated between two wsrpc peers")
	}

	ctx, cancel := context.WithTimeout(ctxT(t), time.Minute)
	ok, err := Call[bool](ctx, cl, "deadline", nil)
	cancel()
	if d := <-deadlineSeen; err != nil || !ok || d <= 0 || d > time.Minute {
		t.Errorf("handler's deadline %v (ok=%v, err=%v): want within the caller's minute", d, ok, err)
	}

	ctx, cancel = context.WithCancel(ctxT(t))
	done := make(chan error, 1)
	go func() { done <- cl.Call(ctx, "relay", nil, nil) }()
	// Wait until the chain reached the client's handler: the server's
	// nested call is then open. Cancel the outer call.
	recv(ctxT(t), t, waiting, "the client's handler to run")
	if n := pendingCount(serverConn(t, srv)); n != 1 {
		t.Fatalf("the server has %d calls pending, want its nested call", n)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("caller: %v", err)
	}
	select {
	case err := <-serverCanceled:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("server's nested call ended with %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server's handler was not canceled")
	}
	select {
	case <-clientCanceled:
	case <-time.After(10 * time.Second):
		t.Fatal("the client's handler, two hops away, was not canceled")
	}
}

// TestNoExtensionForPython: a peer that did not negotiate the subprotocol
// (as a Python peer) gets neither timeout_ms nor cancel frames.
func TestNoExtensionForPython(t *testing.T) {
	srv, url := testServer(t, echoMux(), nil)
	ws := rawDial(t, url)
	checkAlive(t, ws)
	sc := serverConn(t, srv)
	ctx, cancel := context.WithTimeout(ctxT(t), 100*time.Millisecond)
	defer cancel()
	go sc.Call(ctx, "echo", textArgs{"x"}, nil)
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "timeout_ms") {
		t.Errorf("a non-negotiated peer got %s", data)
	}
	// Never answer: after the deadline no cancel frame may follow.
	<-ctx.Done()
	ws.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, data, err := ws.ReadMessage(); err == nil {
		t.Errorf("a non-negotiated peer got %s", data)
	}
}

// TestHandlerContext: a handler sees its connection, the upgrade request's
// headers and path values, and the channel id the peer can ask for.
func TestHandlerContext(t *testing.T) {
	type info struct {
		ClientID string `json:"client_id"`
		Token    string `json:"token"`
		ConnID   string `json:"conn_id"`
	}
	m := NewMux()
	Register(m, "whoami", func(ctx context.Context, _ struct{}) (info, error) {
		c := ConnFromContext(ctx)
		return info{c.PathValue("client_id"), c.Request().Header.Get("X-Token"), c.ID()}, nil
	})
	srv, url := testServer(t, m, nil)
	cl := testDial(t, url+"/agent-7", &DialOptions{Header: map[string][]string{"X-Token": {"secret"}}})
	got, err := Call[info](ctxT(t), cl, "whoami", nil)
	if err != nil || got.ClientID != "agent-7" || got.Token != "secret" || got.ConnID != serverConn(t, srv).ID() {
		t.Fatalf("whoami = %+v, %v", got, err)
	}
	id, err := Call[string](ctxT(t), cl, "_get_channel_id_", nil)
	if err != nil || id != got.ConnID {
		t.Errorf("_get_channel_id_ = %q, %v; want %q", id, err, got.ConnID)
	}
	if ConnFromContext(context.Background()) != nil {
		t.Error("ConnFromContext of a plain context is not nil")
	}
}

// TestCallArguments: every accepted form of arguments, and the refused ones
// fail locally without reaching the peer.
func TestCallArguments(t *testing.T) {
	m := NewMux()
	m.HandleFunc("args", func(_ context.Context, args json.RawMessage) (any, error) { return args, nil })
	_, url := testServer(t, m, nil)
	cl := testDial(t, url, nil)
	ctx := ctxT(t)
	for _, args := range []any{
		nil,
		struct {
			A int `json:"a"`
		}{1},
		map[string]any{"a": 1},
		json.RawMessage(`{"a": 1}`),
		&struct {
			A int `json:"a"`
		}{1},
	} {
		var got map[string]any
		if err := cl.Call(ctx, "args", args, &got); err != nil {
			t.Errorf("%T: %v", args, err)
		} else if args != nil && got["a"] != float64(1) {
			t.Errorf("%T: handler got %v", args, got)
		}
	}
	for _, args := range []any{42, "text", []int{1}, json.RawMessage(`[1]`), json.RawMessage(`{bad`), func() {}} {
		if err := cl.Call(ctx, "args", args, nil); err == nil {
			t.Errorf("%T %v: no error", args, args)
		} else if _, ok := errors.AsType[*Error](err); ok {
			t.Errorf("%T: refused by the peer (%v), want a local error", args, err)
		}
	}
}

// TestResultTypes: result_type names as the Python library writes them.
func TestResultTypes(t *testing.T) {
	type Point struct{ X, Y float64 }
	m := NewMux()
	Register(m, "s", func(context.Context, struct{}) (string, error) { return "x", nil })
	Register(m, "i", func(context.Context, struct{}) (int64, error) { return 1, nil })
	Register(m, "u", func(context.Context, struct{}) (uint8, error) { return 1, nil })
	Register(m, "f", func(context.Context, struct{}) (float64, error) { return 1, nil })
	Register(m, "f32", func(context.Context, struct{}) (float32, error) { return 2.5, nil })
	Register(m, "fa", func(context.Context, struct{}) (any, error) { return 3.0, nil })
	Register(m, "b", func(context.Context, struct{}) (bool, error) { return true, nil })
	Register(m, "l", func(context.Context, struct{}) ([]Point, error) { return []Point{{}}, nil })
	Register(m, "d", func(context.Context, struct{}) (map[string]int, error) { return map[string]int{"a": 1}, nil })
	Register(m, "p", func(context.Context, struct{}) (*Point, error) { return &Point{1, 2}, nil })
	Register(m, "n", func(context.Context, struct{}) (*Point, error) { return nil, nil })
	Register(m, "a", func(context.Context, struct{}) (any, error) { return Point{}, nil })
	Register(m, "r", func(context.Context, struct{}) (json.RawMessage, error) { return json.RawMessage(`2.5`), nil })
	m.HandleFunc("h", func(context.Context, json.RawMessage) (any, error) { return []int{1}, nil })
	want := map[string]string{"s": "str", "i": "int", "u": "int", "f": "float", "f32": "float", "fa": "float", "b": "bool", "l": "List",
		"d": "Dict", "p": "Point", "n": "unknown-type", "a": "Point", "r": "float", "h": "List"}
	_, url := testServer(t, m, nil)
	ws := rawDial(t, url)
	for method, typ := range want {
		got := roundTripRaw(t, ws, websocket.TextMessage, `{"request": {"method": "`+method+`", "arguments": {}, "call_id": "t"}}`)
		if resp, _ := got["response"].(map[string]any); resp == nil || resp["result_type"] != typ {
			t.Errorf("%s: %v, want result_type %q", method, got, typ)
		}
		if typ == "float" {
			// A Python peer must decode a float, not an int: 1.0, never 1.
			ws.WriteMessage(websocket.TextMessage, []byte(`{"request": {"method": "`+method+`", "arguments": {}, "call_id": "t"}}`))
			_, raw, _ := ws.ReadMessage()
			if !regexp.MustCompile(`"result":-?[0-9]+\.[0-9]`).Match(raw) {
				t.Errorf("%s: float result written as %s", method, raw)
			}
		}
	}
}

// TestCloseFromHandler: Close is safe from a handler and from hooks.
func TestCloseFromHandler(t *testing.T) {
	m := NewMux()
	Register(m, "bye", func(ctx context.Context, _ struct{}) (bool, error) {
		ConnFromContext(ctx).Close()
		ConnFromContext(ctx).Close() // idempotent
		return true, nil
	})
	var errLog errorLog
	srv, url := testServer(t, m, &ServerOptions{
		ConnOptions: ConnOptions{
			OnError: func(c *Conn, err error) { errLog.hook(c, err); c.Close() },
		},
	})
	disconnected := make(chan error, 1)
	cl := testDial(t, url, &DialOptions{DisableReconnect: true, ConnOptions: ConnOptions{OnDisconnect: func(_ *Conn, err error) { disconnected <- err }}})
	err := cl.Call(ctxT(t), "bye", nil, nil)
	if err != nil && !errors.Is(err, ErrConnectionLost) {
		t.Errorf("bye: %v", err)
	}
	select {
	case <-disconnected:
	case <-time.After(10 * time.Second):
		t.Fatal("client not disconnected")
	}
	waitConnsDone(t, srv)

	// Close from OnError, which runs on the reader.
	ws := rawDial(t, url)
	ws.WriteMessage(websocket.TextMessage, []byte("not json"))
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			break // closed by the server
		}
	}
	if !errLog.has(ErrBadFrame) {
		t.Error("OnError not called")
	}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // against a hang, not a timing assertion
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in a minute")
		}
		time.Sleep(time.Millisecond)
	}
}

func pendingCount(c *Conn) int {
	c.pending.mu.Lock()
	defer c.pending.mu.Unlock()
	return len(c.pending.calls)
}

// TestCallMeBack: the utility set's trigger pair. call_me_back returns a
// call id at once, then calls the caller's method under that id; the
// response is then kept for get_response, once.
func TestCallMeBack(t *testing.T) {
	_, url := testServer(t, echoMux(), nil)
	got := make(chan string, 1)
	cm := NewMux()
	Register(cm, "note", func(_ context.Context, a textArgs) (string, error) {
		got <- a.Text
		return "noted " + a.Text, nil
	})
	cl := testDial(t, url, &DialOptions{Methods: cm})
	ctx := ctxT(t)
	id, err := Call[string](ctx, cl, "call_me_back", map[string]any{"method_name": "note", "args": map[string]any{"text": "hi"}})
	if err != nil || !hex32.MatchString(id) {
		t.Fatalf("call_me_back = %q, %v", id, err)
	}
	if text := <-got; text != "hi" {
		t.Fatalf("note got %q", text)
	}
	type stored struct {
		Result     string `json:"result"`
		ResultType string `json:"result_type"`
		CallID     string `json:"call_id"`
	}
	var r stored
	waitFor(t, func() bool {
		r, err = Call[stored](ctx, cl, "get_response", map[string]any{"call_id": id})
		return err == nil
	})
	if r != (stored{"noted hi", "str", id}) {
		t.Errorf("get_response = %+v", r)
	}
	_, err = Call[stored](ctx, cl, "get_response", map[string]any{"call_id": id})
	if e, ok := errors.AsType[*Error](err); !ok || e.Code != CodeInvalidParams {
		t.Errorf("second get_response: %v, want an invalid-params error", err)
	}
	pd, err := Call[ProcessDetails](ctx, cl, "get_process_details", nil)
	if err != nil || pd.PID == 0 || len(pd.Cmd) == 0 || pd.WorkingDir == "" {
		t.Errorf("get_process_details = %+v, %v", pd, err)
	}
}

// TestDialTimeout: a Dial that runs out of time says so with the
// context's error.
func TestDialTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(ctxT(t), 100*time.Millisecond)
	defer cancel()
	_, err = Dial(ctx, "ws://"+ln.Addr().String()+"/ws", &DialOptions{ConnOptions: ConnOptions{Logger: quiet()}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial: %v, want context.DeadlineExceeded", err)
	}
}
