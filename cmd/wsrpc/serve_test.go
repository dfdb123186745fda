package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"regexp"
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
		Logger:           slog.New(slog.DiscardHandler),
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
	stderr *lockedBuffer
	cancel context.CancelFunc
	code   chan int
}

// startServe runs wsrpc serve on a free loopback port, as the program does,
// with setup (if not nil) applied to its demo server, until stop.
func startServe(t *testing.T, setup func(*demo)) *serveRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &serveRun{stderr: new(lockedBuffer), cancel: cancel, code: make(chan int, 1)}
	stdout := newFirstLine()
	go func() {
		s.code <- serveCommand(ctx, []string{"--addr", "127.0.0.1:0"}, stdio{out: stdout, err: s.stderr}, setup)
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
}
