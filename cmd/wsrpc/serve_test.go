package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/wsrpc/wsrpc"
)

// dialQuiet connects a Go client that exposes methods (nil: none).
func dialQuiet(t *testing.T, url string, methods *wsrpc.Mux) *wsrpc.Client {
	t.Helper()
	c, err := wsrpc.Dial(t.Context(), url, &wsrpc.DialOptions{
		Methods:          methods,
		DisableReconnect: true,
		ConnOptions: wsrpc.ConnOptions{
			Logger: slog.New(slog.DiscardHandler),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type wakeUp struct {
	Message string `json:"message"`
	Name    string `json:"name"`
}

// TestWakeUpCall registers a wake-up call from a Go client, which then
// receives wake_up from the server.
func TestWakeUpCall(t *testing.T) {
	t.Parallel()
	url := startDemo(t, "")
	woke := make(chan wakeUp, 1)
	methods := wsrpc.NewMux()
	wsrpc.Register(methods, "wake_up", func(_ context.Context, w wakeUp) (any, error) {
		select {
		case woke <- w:
		default: // a second call would be a bug; the test sees only the first
		}
		return nil, nil
	})
	client := dialQuiet(t, url+"/alice", methods)

	ok, err := wsrpc.Call[bool](t.Context(), client, "register_wake_up_call",
		map[string]any{"time_delta": 0.05, "name": "alice"})
	if err != nil || !ok {
		t.Fatalf("register_wake_up_call = %v, %v; want true", ok, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	select {
	case w := <-woke:
		if want := (wakeUp{"Good morning!", "alice"}); w != want {
			t.Errorf("wake_up got %+v, want %+v", w, want)
		}
	case <-ctx.Done():
		t.Fatal("no wake_up call")
	}
}

func TestWakeUpCallInvalid(t *testing.T) {
	t.Parallel()
	url := startDemo(t, "")
	client := dialQuiet(t, url, nil)
	for _, delta := range []float64{-1, 3601, 1e300} {
		_, err := wsrpc.Call[bool](t.Context(), client, "register_wake_up_call",
			map[string]any{"time_delta": delta, "name": "x"})
		if e, ok := errors.AsType[*wsrpc.Error](err); !ok || e.Code != wsrpc.CodeInvalidParams {
			t.Errorf("time_delta %v: err %v, want code %d", delta, err, wsrpc.CodeInvalidParams)
		}
	}
	// A pending wake-up call keeps its name: a long one is refused.
	_, err := wsrpc.Call[bool](t.Context(), client, "register_wake_up_call",
		map[string]any{"time_delta": 1, "name": strings.Repeat("x", maxWakeUpName+1)})
	if e, ok := errors.AsType[*wsrpc.Error](err); !ok || e.Code != wsrpc.CodeInvalidParams {
		t.Errorf("a name of %d bytes: err %v, want code %d", maxWakeUpName+1, err, wsrpc.CodeInvalidParams)
	}
	if _, err := wsrpc.Call[string](t.Context(), client, "_ping_", nil); err != nil {
		t.Errorf("the connection failed after refused calls: %v", err)
	}
}

// TestServeCommand runs wsrpc serve as the program does, calls it, and
// stops it as SIGINT does, with a client connected and a wake-up call
// pending.
func TestServeCommand(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout := newFirstLine()
	var stderr bytes.Buffer // written until run returns
	code := make(chan int, 1)
	go func() { code <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0"}, nil, stdout, &stderr) }()

	var url string
	select {
	case line := <-stdout.line:
		var ok bool
		url, ok = strings.CutPrefix(line, "wsrpc: serving on ")
		if !ok || !strings.HasPrefix(url, "ws://127.0.0.1:") || strings.HasSuffix(url, ":0/ws") {
			t.Fatalf("first line %q, want the address it serves on", line)
		}
	case c := <-code:
		t.Fatalf("serve exited with %d: %s", c, stderr.String())
	}

	if r := runCmd(t, "", "call", url, "concat", "a=con", "b=cat"); r.stdout != "\"concat\"\n" {
		t.Errorf("call: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	client := dialQuiet(t, url, nil)
	if ok, err := wsrpc.Call[bool](t.Context(), client, "register_wake_up_call",
		map[string]any{"time_delta": 3600, "name": "late"}); err != nil || !ok {
		t.Fatalf("register_wake_up_call = %v, %v", ok, err)
	}

	cancel() // as SIGINT does
	if c := <-code; c != exitOK {
		t.Errorf("serve exited with %d, want 0; stderr:\n%s", c, stderr.String())
	}
	<-client.Done() // the server closed the connection
	if !strings.Contains(stderr.String(), "msg=connected") {
		t.Errorf("serve did not log the connection; stderr:\n%s", stderr.String())
	}
}

func TestServeListenError(t *testing.T) {
	t.Parallel()
	r := runCmd(t, "", "serve", "--addr", "127.0.0.1:-1")
	if r.code != exitFail || !strings.HasPrefix(r.stderr, "wsrpc: listen tcp") {
		t.Errorf("exit %d, stderr %q; want %d and the listen error", r.code, r.stderr, exitFail)
	}
}

// serveRun is a wsrpc serve command running in the test.
type serveRun struct {
	url    string
	demo   *demo // set before url
	stderr *lockedBuffer
	cancel context.CancelFunc
	code   chan int
}

// startServe runs wsrpc serve on a free loopback port, as the program does,
// with setup (if not nil) applied to its demo server, until stop.
func startServe(t *testing.T, setup func(*demo)) *serveRun {
	t.Helper()
	return startServeArgs(t, nil, setup)
}

// startServeArgs is startServe with more flags.
func startServeArgs(t *testing.T, args []string, setup func(*demo)) *serveRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &serveRun{stderr: new(lockedBuffer), cancel: cancel, code: make(chan int, 1)}
	stdout := newFirstLine()
	keep := func(d *demo) {
		s.demo = d
		if setup != nil {
			setup(d)
		}
	}
	go func() {
		s.code <- serveCommand(ctx, append([]string{"--addr", "127.0.0.1:0"}, args...), stdio{out: stdout, err: s.stderr}, keep)
	}()
	t.Cleanup(func() { s.stop() })
	select {
	case line := <-stdout.line:
		s.url = strings.TrimPrefix(line, "wsrpc: serving on ")
	case c := <-s.code:
		s.code <- c
		t.Fatalf("serve exited with %d: %s", c, s.stderr.String())
	}
	return s
}

// stop stops the command, as SIGINT does, and returns its exit status.
func (s *serveRun) stop() int {
	s.cancel()
	c := <-s.code
	s.code <- c // for the next stop
	return c
}

// register registers a wake-up call an hour away.
func register(t *testing.T, c *wsrpc.Client) error {
	t.Helper()
	_, err := wsrpc.Call[bool](t.Context(), c, "register_wake_up_call",
		map[string]any{"time_delta": 3600, "name": "later"})
	return err
}

// isServerError reports whether err is a CodeServerError error whose
// message holds want.
func isServerError(err error, want string) bool {
	e, ok := errors.AsType[*wsrpc.Error](err)
	return ok && e.Code == wsrpc.CodeServerError && strings.Contains(e.Message, want)
}

// TestWakeUpLimit registers wake-up calls past the limit of one connection,
// and checks that they hold no goroutines and are released when their
// connection ends.
func TestWakeUpLimit(t *testing.T) {
	// Not parallel: it counts goroutines.
	d, url := startDemoWith(t, "", nil)
	a := dialQuiet(t, url, nil)
	before := runtime.NumGoroutine()
	for i := range maxWakeUpsPerConn {
		if err := register(t, a); err != nil {
			t.Fatalf("wake-up call %d: %v", i+1, err)
		}
	}
	if n := runtime.NumGoroutine() - before; n >= maxWakeUpsPerConn/2 {
		t.Errorf("%d pending wake-up calls added %d goroutines", maxWakeUpsPerConn, n)
	}
	err := register(t, a)
	if want := fmt.Sprintf("too many pending wake-up calls on this connection (at most %d)", maxWakeUpsPerConn); !isServerError(err, want) {
		t.Errorf("wake-up call %d: err %v, want code %d and %q", maxWakeUpsPerConn+1, err, wsrpc.CodeServerError, want)
	}
	if n := d.pendingWakeUps(); n != maxWakeUpsPerConn {
		t.Errorf("%d wake-up calls pending, want %d", n, maxWakeUpsPerConn)
	}

	b := dialQuiet(t, url, nil)
	if err := register(t, b); err != nil {
		t.Errorf("another connection's wake-up call: %v", err)
	}
	a.Close()
	waitFor(t, "the closed connection's wake-up calls to be released", func() bool { return d.pendingWakeUps() == 1 })
}

// TestWakeUpServerLimit fills the server's limit of pending wake-up calls
// from two connections.
func TestWakeUpServerLimit(t *testing.T) {
	t.Parallel()
	d, url := startDemoWith(t, "", func(d *demo) { d.maxPerConn, d.maxAllWakeUps = 2, 3 })
	a, b := dialQuiet(t, url, nil), dialQuiet(t, url, nil)
	for _, c := range []*wsrpc.Client{a, a, b} {
		if err := register(t, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := register(t, b); !isServerError(err, "too many pending wake-up calls on this server (at most 3)") {
		t.Errorf("err %v, want the server's limit", err)
	}
	a.Close()
	waitFor(t, "the closed connection's wake-up calls to be released", func() bool { return d.pendingWakeUps() == 1 })
	if err := register(t, b); err != nil {
		t.Errorf("after the first connection ended: %v", err)
	}
}

// TestServeDrainTimeout stops wsrpc serve while a call runs past the drain
// time: the call is cut, a warning says how many connections were, and the
// exit status is 0.
func TestServeDrainTimeout(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 1)
	s := startServe(t, func(d *demo) {
		d.drain = 300 * time.Millisecond
		d.mux.HandleFunc("block", func(ctx context.Context, _ json.RawMessage) (any, error) {
			started <- struct{}{}
			<-ctx.Done() // until its connection is closed
			return nil, ctx.Err()
		})
	})
	busy := dialQuiet(t, s.url, nil)
	dialQuiet(t, s.url, nil) // idle: drained at once
	called := make(chan error, 1)
	go func() {
		_, err := wsrpc.Call[any](context.Background(), busy, "block", nil)
		called <- err
	}()
	<-started

	if c := s.stop(); c != exitOK {
		t.Errorf("serve exited with %d, want 0; stderr:\n%s", c, s.stderr.String())
	}
	if err := <-called; err == nil {
		t.Error("the call in flight succeeded; want it cut")
	}
	var warning string
	for line := range strings.Lines(s.stderr.String()) {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "drain timed out") {
			warning = line
		}
	}
	if !strings.Contains(warning, " conns=1\n") {
		t.Errorf("no warning that the drain cut 1 connection; stderr:\n%s", s.stderr.String())
	}
}

// TestServeLogsConnections checks that wsrpc serve logs each connection and
// disconnection at INFO itself, whatever the library logs.
func TestServeLogsConnections(t *testing.T) {
	t.Parallel()
	s := startServe(t, nil)
	client := dialQuiet(t, s.url+"/alice", nil)
	id, err := wsrpc.Call[string](t.Context(), client, "_get_channel_id_", nil)
	if err != nil {
		t.Fatal(err)
	}
	client.Close()
	if c := s.stop(); c != exitOK {
		t.Errorf("serve exited with %d", c)
	}
	logs := s.stderr.String()
	for _, pattern := range []string{
		`level=INFO msg=connected conn=` + id + ` remote=127\.0\.0\.1:\d+ path=/ws/alice\n`,
		`level=INFO msg=disconnected conn=` + id + ` cause="[^"\n]*1000[^"\n]*"\n`,
	} {
		if !regexp.MustCompile(`(?m)^time=\S+ ` + pattern).MatchString(logs) {
			t.Errorf("no line matching %q in stderr:\n%s", pattern, logs)
		}
	}
	for _, msg := range []string{"connected", "disconnected"} {
		if n := strings.Count(logs, " msg="+msg+" conn="+id+" "); n != 1 {
			t.Errorf("%d %q lines for the connection, want 1; stderr:\n%s", n, msg, logs)
		}
	}
}

// TestWakeUpCallAfterStop: once the demo stops, register_wake_up_call is
// refused with wsrpc.ErrShuttingDown, the refusal a stopping server sends.
func TestWakeUpCallAfterStop(t *testing.T) {
	t.Parallel()
	d, err := newDemo(demoConfig{logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	d.stop()
	if _, err := d.registerWakeUpCall(t.Context(), wakeUpArgs{TimeDelta: 1, Name: "x"}); !errors.Is(err, wsrpc.ErrShuttingDown) {
		t.Errorf("register_wake_up_call after stop: %v, want %v", err, wsrpc.ErrShuttingDown)
	}
}
