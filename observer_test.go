package wsrpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// recorder is an Observer that keeps what it saw.
type recorder struct {
	mu       sync.Mutex
	opened   int
	closed   []error
	started  []CallInfo
	ended    []CallInfo
	refused  []string
	frames   map[Direction]int
	bytes    map[Direction]int
	depth    int
	depthB   int64
	dropped  int
	tries    []error
	ctxValue []any // what CallEnded's context carried
}

type obsKey struct{}

func newRecorder() *recorder {
	return &recorder{frames: map[Direction]int{}, bytes: map[Direction]int{}}
}

func (r *recorder) ConnOpened(*Conn) { r.mu.Lock(); r.opened++; r.mu.Unlock() }
func (r *recorder) ConnClosed(_ *Conn, err error) {
	r.mu.Lock()
	r.closed = append(r.closed, err)
	r.mu.Unlock()
}
func (r *recorder) CallStarted(ctx context.Context, _ *Conn, ci *CallInfo) context.Context {
	r.mu.Lock()
	r.started = append(r.started, *ci)
	r.mu.Unlock()
	return context.WithValue(ctx, obsKey{}, "span of "+ci.Method)
}
func (r *recorder) CallEnded(ctx context.Context, _ *Conn, ci *CallInfo) {
	r.mu.Lock()
	r.ended = append(r.ended, *ci)
	r.ctxValue = append(r.ctxValue, ctx.Value(obsKey{}))
	r.mu.Unlock()
}
func (r *recorder) CallRefused(_ *Conn, method string, _ error) {
	r.mu.Lock()
	r.refused = append(r.refused, method)
	r.mu.Unlock()
}
func (r *recorder) Frame(_ *Conn, dir Direction, size int) {
	r.mu.Lock()
	r.frames[dir]++
	r.bytes[dir] += size
	r.mu.Unlock()
}
func (r *recorder) Queue(_ *Conn, frames int, bytes int64, dropped int) {
	r.mu.Lock()
	r.depth += frames
	r.depthB += bytes
	r.dropped += dropped
	r.mu.Unlock()
}
func (r *recorder) ConnectTry(_ string, _ int, err error) {
	r.mu.Lock()
	r.tries = append(r.tries, err)
	r.mu.Unlock()
}

func (r *recorder) endedCalls(dir Direction) map[string]CallInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]CallInfo{}
	for _, ci := range r.ended {
		if ci.Dir == dir {
			m[ci.Method] = ci
		}
	}
	return m
}

// startedCall returns the last call in dir of method that started.
func (r *recorder) startedCall(dir Direction, method string) (CallInfo, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.started) - 1; i >= 0; i-- {
		if ci := r.started[i]; ci.Dir == dir && ci.Method == method {
			return ci, true
		}
	}
	return CallInfo{}, false
}

var _ Observer = (*recorder)(nil)
var _ Observer = NopObserver{}

// TestObserver: an Observer on each side sees the connection open and
// close, every call both ways with its method, direction, outcome and
// sizes (methods added with Register included), refused calls, frames,
// the send queue, and the client's connect tries; the context it returns
// from CallStarted is the handler's.
func TestObserver(t *testing.T) {
	ctx := ctxT(t)
	srvObs, cliObs := newRecorder(), newRecorder()
	m := utilMux()
	Register(m, "span", func(ctx context.Context, _ struct{}) (string, error) {
		s, _ := ctx.Value(obsKey{}).(string)
		return s, nil
	})
	Register(m, "ask_client", func(ctx context.Context, _ struct{}) (string, error) {
		return Call[string](ctx, ConnFromContext(ctx), "echo", textArgs{"nested"})
	})
	srv, u := testServer(t, m, &ServerOptions{ConnOptions: ConnOptions{Observer: srvObs}})
	cl := testDial(t, u, &DialOptions{ConnOptions: ConnOptions{Observer: cliObs}, Methods: utilMux()})

	before := time.Now()
	if got, err := Call[string](ctx, cl, "span", nil); err != nil || got != "span of span" {
		t.Errorf("span = %q, %v: the handler's context is not the one CallStarted returned", got, err)
	}
	if got, err := Call[string](ctx, cl, "ask_client", nil); err != nil || got != "nested" {
		t.Errorf("ask_client = %q, %v", got, err)
	}
	_, err := Call[string](ctx, cl, "echo", map[string]any{"wrong": 1})
	if e, ok := errors.AsType[*Error](err); !ok || e.Code != CodeInvalidParams {
		t.Fatalf("echo with a wrong argument: %v", err)
	}
	if _, err := Call[string](ctx, cl, "no_such_method", nil); err == nil {
		t.Fatal("no_such_method answered")
	}
	after := time.Now()
	cl.Close()
	srv.Close()

	in := srvObs.endedCalls(Inbound)
	for _, name := range []string{"span", "ask_client", "echo"} {
		ci, ok := in[name]
		if !ok {
			t.Errorf("the server's observer saw no inbound call %q (saw %v)", name, in)
			continue
		}
		if ci.Duration <= 0 || ci.RequestBytes == 0 || ci.ResponseBytes == 0 {
			t.Errorf("inbound %q: %+v, want a duration and sizes", name, ci)
		}
		// Start is when the request arrived (a tracer's span starts then),
		// as a wall-clock time.
		if end := ci.Start.Add(ci.Duration); ci.Start.Before(before) || end.After(after) {
			t.Errorf("inbound %q: from %v to %v, not within the calls' %v to %v", name, ci.Start, end, before, after)
		}
	}
	if ci := in["echo"]; ci.Code != CodeInvalidParams || ci.Err == nil {
		t.Errorf("inbound echo with a wrong argument: code %d, err %v, want %d", ci.Code, ci.Err, CodeInvalidParams)
	}
	if ci := in["span"]; ci.Code != 0 || ci.Err != nil {
		t.Errorf("inbound span: code %d, err %v, want success", ci.Code, ci.Err)
	}
	if ci, ok := srvObs.endedCalls(Outbound)["echo"]; !ok || ci.Err != nil {
		t.Errorf("the server's nested call to the client: %+v (seen %v)", ci, ok)
	}
	if ci, ok := cliObs.endedCalls(Inbound)["echo"]; !ok || ci.Err != nil {
		t.Errorf("the client's handler of the nested call: %+v (seen %v)", ci, ok)
	}
	out := cliObs.endedCalls(Outbound)
	if ci := out["echo"]; ci.Code != CodeInvalidParams {
		t.Errorf("the client's call with a wrong argument: code %d, want %d", ci.Code, CodeInvalidParams)
	}
	if ci := out["no_such_method"]; ci.Code != CodeMethodNotFound {
		t.Errorf("the client's call of an unknown method: code %d, want %d", ci.Code, CodeMethodNotFound)
	}

	for side, r := range map[string]*recorder{"server": srvObs, "client": cliObs} {
		r.mu.Lock()
		if r.opened != 1 || len(r.closed) != 1 {
			t.Errorf("%s: %d opened, %d closed, want 1 each", side, r.opened, len(r.closed))
		}
		if len(r.started) != len(r.ended) {
			t.Errorf("%s: %d calls started, %d ended", side, len(r.started), len(r.ended))
		}
		for i, v := range r.ctxValue {
			if v == nil {
				t.Errorf("%s: CallEnded %d did not get CallStarted's context", side, i)
			}
		}
		if r.frames[Inbound] == 0 || r.frames[Outbound] == 0 || r.bytes[Inbound] == 0 {
			t.Errorf("%s: frames %v, bytes %v", side, r.frames, r.bytes)
		}
		if r.depth != 0 || r.depthB != 0 {
			t.Errorf("%s: the send queue's changes add up to %d frames, %d bytes, want 0", side, r.depth, r.depthB)
		}
		r.mu.Unlock()
	}
	srvObs.mu.Lock()
	if len(srvObs.refused) != 1 || srvObs.refused[0] != "no_such_method" {
		t.Errorf("server refused %v, want [no_such_method]", srvObs.refused)
	}
	// The client closed first; the server's Close may still come before
	// its reader saw the client's close frame.
	if err := srvObs.closed[0]; !isNormalClose(err) && !errors.Is(err, ErrClosed) {
		t.Errorf("server's connection ended with %v, want the client's close (1000) or ErrClosed", err)
	}
	srvObs.mu.Unlock()
	cliObs.mu.Lock()
	if !errors.Is(cliObs.closed[0], ErrClosed) {
		t.Errorf("client's connection ended with %v, want ErrClosed", cliObs.closed[0])
	}
	if len(cliObs.tries) != 1 || cliObs.tries[0] != nil {
		t.Errorf("client connect tries %v, want one that succeeded", cliObs.tries)
	}
	cliObs.mu.Unlock()
}

// TestObserverConnectTries: each failed connect try reaches ConnectTry
// with its error.
func TestObserverConnectTries(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	defer hs.Close()
	obs := newRecorder()
	_, err := tryDial(ctxT(t), t, "ws"+strings.TrimPrefix(hs.URL, "http"), &DialOptions{
		ConnOptions: ConnOptions{
			Observer: obs,
		},
		Retry: RetryOptions{MaxTries: 3, InitialInterval: 1},
	})
	if err == nil {
		t.Fatal("Dial succeeded against a 503")
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.tries) != 3 {
		t.Fatalf("%d connect tries observed, want 3", len(obs.tries))
	}
	for i, err := range obs.tries {
		if he, ok := errors.AsType[*HTTPError](err); !ok || he.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("try %d: %v, want HTTP 503", i+1, err)
		}
	}
}

// TestObserverRefused: a call over MaxConcurrentCalls is refused, and
// reaches CallRefused.
func TestObserverRefused(t *testing.T) {
	ctx := ctxT(t)
	obs := newRecorder()
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	m := utilMux()
	Register(m, "hold", hold(started, release))
	_, u := testServer(t, m, &ServerOptions{ConnOptions: ConnOptions{Observer: obs, MaxConcurrentCalls: 1}})
	cl := testDial(t, u, nil)
	held := make(chan error, 1)
	go func() { held <- cl.Call(ctx, "hold", nil, nil) }()
	recv(ctx, t, started, "hold to start")
	if _, err := Call[string](ctx, cl, "echo", textArgs{"x"}); err == nil {
		t.Fatal("a call over MaxConcurrentCalls ran")
	}
	close(release)
	if err := recv(ctx, t, held, "hold to return"); err != nil {
		t.Fatal(err)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.refused) != 1 || obs.refused[0] != "echo" {
		t.Errorf("refused %v, want [echo]", obs.refused)
	}
}

// propagator is a recorder that, as a tracer does, gives each outbound
// call to a peer that negotiated the extension a trace context of its own.
type propagator struct{ *recorder }

func (p propagator) CallStarted(ctx context.Context, c *Conn, ci *CallInfo) context.Context {
	if ci.Dir == Outbound && ci.Extension {
		ci.TraceParent = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"
		ci.TraceState = "m=" + ci.Method
	}
	return p.recorder.CallStarted(ctx, c, ci)
}

// TestObserverTraceContext: what CallStarted puts in an outbound call's
// TraceParent and TraceState reaches the peer's Observer in the inbound
// call's, both ways and for Call and Go alike, and a request from a peer
// that did not negotiate the extension gets its trace context read too,
// with Extension false.
func TestObserverTraceContext(t *testing.T) {
	ctx := ctxT(t)
	srvObs, cliObs := newRecorder(), newRecorder()
	m := utilMux()
	Register(m, "ask_client", func(ctx context.Context, _ struct{}) (string, error) {
		return Call[string](ctx, ConnFromContext(ctx), "echo", textArgs{"nested"})
	})
	_, u := testServer(t, m, &ServerOptions{ConnOptions: ConnOptions{Observer: propagator{srvObs}}})
	cl := testDial(t, u, &DialOptions{ConnOptions: ConnOptions{Observer: propagator{cliObs}}, Methods: utilMux()})
	if _, err := Call[string](ctx, cl, "ask_client", nil); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	if err := cl.Go(ctx, "echo", textArgs{"go"}, func(r *Reply) { done <- r.Err() }); err != nil {
		t.Fatal(err)
	}
	if err := await(t, done, 10*time.Second, "Go's answer"); err != nil {
		t.Fatal(err)
	}
	// CallStarted ran before the handlers answered; CallEnded may not have.
	const parent = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"
	check := func(side string, r *recorder, method string) {
		t.Helper()
		ci, ok := r.startedCall(Inbound, method)
		if !ok || !ci.Extension || ci.TraceParent != parent || ci.TraceState != "m="+method {
			t.Errorf("%s's inbound %s: seen %v, extension %v, traceparent %q, tracestate %q", side, method, ok, ci.Extension, ci.TraceParent, ci.TraceState)
		}
	}
	check("server", srvObs, "ask_client")
	check("server", srvObs, "echo") // made with Go
	check("client", cliObs, "echo") // the server's nested call

	ws := rawDial(t, u) // offers no subprotocol
	got := roundTripRaw(t, ws, websocket.TextMessage,
		`{"request": {"method": "_get_channel_id_", "arguments": {}, "call_id": "a"}, "response": null}`)
	if got["response"] == nil {
		t.Fatalf("no answer: %v", got)
	}
	roundTripRaw(t, ws, websocket.TextMessage,
		`{"request": {"method": "echo", "arguments": {"text": "x"}, "call_id": "b", "traceparent": "00-x-y-01", "tracestate": "k=v"}, "response": null}`)
	found := false
	srvObs.mu.Lock()
	for _, ci := range srvObs.started { // CallStarted runs before the handler answers
		if ci.Dir == Inbound && ci.TraceParent == "00-x-y-01" {
			found = true
			if ci.Extension || ci.TraceState != "k=v" {
				t.Errorf("a raw peer's call: extension %v, tracestate %q", ci.Extension, ci.TraceState)
			}
		}
	}
	srvObs.mu.Unlock()
	if !found {
		t.Error("the trace context of a peer without the extension was not read")
	}
}

// TestLogCalls: LogCalls logs each call both ways and each refused call,
// with the documented keys, and never the arguments or the result;
// joined with another Observer, both see every call.
func TestLogCalls(t *testing.T) {
	ctx := ctxT(t)
	var mu sync.Mutex
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rec := newRecorder()
	m := utilMux()
	Register(m, "fail", func(context.Context, struct{ Secret string }) (string, error) {
		return "", Errorf(CodeInvalidParams, "no")
	})
	srv, u := testServer(t, m, &ServerOptions{ConnOptions: ConnOptions{Observer: JoinObservers(nil, LogCalls(logger, slog.LevelInfo), rec)}})
	cl := testDial(t, u, nil)
	if _, err := Call[string](ctx, cl, "echo", textArgs{"secret-argument"}); err != nil {
		t.Fatal(err)
	}
	Call[string](ctx, cl, "fail", map[string]string{"secret": "secret-argument"})
	Call[string](ctx, cl, "no_such", nil)
	cl.Close()
	srv.Close() // the handlers, and their CallEnded, have returned

	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if strings.Contains(out, "secret-argument") {
		t.Errorf("a payload was logged:\n%s", out)
	}
	got := map[string]map[string]any{}
	for line := range strings.Lines(out) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if rec["level"] != "INFO" {
			t.Errorf("logged at %v, want INFO: %s", rec["level"], line)
		}
		for _, k := range []string{"conn", "remote", "method"} {
			if s, _ := rec[k].(string); s == "" {
				t.Errorf("no %s: %s", k, line)
			}
		}
		got[rec["msg"].(string)+" "+rec["method"].(string)] = rec
	}
	if r := got["call echo"]; r == nil || r["dir"] != "inbound" || r["duration"] == nil || r["code"] != nil || r["err"] != nil {
		t.Errorf("echo: %v", r)
	}
	if r := got["call fail"]; r == nil || r["code"] != float64(CodeInvalidParams) || r["err"] == nil {
		t.Errorf("fail: %v", r)
	}
	if r := got["call refused no_such"]; r == nil || r["code"] != float64(CodeMethodNotFound) || r["err"] == nil {
		t.Errorf("no_such: %v", r)
	}
	if len(rec.endedCalls(Inbound)) != 2 || len(rec.refused) != 1 {
		t.Errorf("the joined recorder saw %d calls and %d refused, want 2 and 1", len(rec.endedCalls(Inbound)), len(rec.refused))
	}
	if JoinObservers(nil, nil) != nil || JoinObservers(rec) != Observer(rec) {
		t.Error("JoinObservers of none is not nil, or of one is not that one")
	}
}

// LogCalls joined with another Observer: each call is logged once it
// ended, without its arguments or result.
func ExampleLogCalls() {
	// Drop the time, and the attributes that differ from run to run.
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			switch a.Key {
			case slog.TimeKey, "conn", "remote", "duration":
				return slog.Attr{}
			}
			return a
		},
	}))
	mux := NewMux()
	RegisterUtilities(mux)
	srv, err := NewServer(mux, &ServerOptions{ConnOptions: ConnOptions{
		Observer: JoinObservers(LogCalls(logger, slog.LevelInfo), NopObserver{}),
	}})
	if err != nil {
		panic(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	cl, err := Dial(context.Background(), "ws"+strings.TrimPrefix(hs.URL, "http"), nil)
	if err != nil {
		panic(err)
	}
	Call[string](context.Background(), cl, "echo", map[string]string{"text": "not logged"})
	cl.Close()
	srv.Close()
	// Output:
	// level=INFO msg=call dir=inbound method=echo
}
