package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/wsrpc/wsrpc"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// result is the outcome of one command line.
type result struct {
	code           int
	stdout, stderr string
}

// runCmd runs the command line args in-process with stdin as its input.
func runCmd(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return runCmdContext(t.Context(), stdin, args...)
}

// runCmdContext is runCmd with ctx in place of the signals that end a
// command.
func runCmdContext(ctx context.Context, stdin string, args ...string) result {
	var out, errOut bytes.Buffer
	code := run(ctx, args, strings.NewReader(stdin), &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

// startDemo serves the demo server on a loopback port until the test ends,
// with two test-only methods added:
//
//   - args() returns the keyword arguments it got, as a JSON object.
//   - ask_echo(text) calls echo(text) on its caller and returns the answer.
//
// It returns the ws:// URL of /ws.
func startDemo(t *testing.T, token string) string {
	t.Helper()
	d := newDemo(token, slog.New(slog.DiscardHandler))
	d.mux.HandleFunc("args", func(_ context.Context, args json.RawMessage) (any, error) {
		return args, nil
	})
	wsrpc.Register(d.mux, "ask_echo", func(ctx context.Context, a struct {
		Text string `json:"text"`
	}) (string, error) {
		return wsrpc.Call[string](ctx, wsrpc.ConnFromContext(ctx), "echo", a)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- d.serve(ctx, ln, &bytes.Buffer{}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return "ws://" + ln.Addr().String() + "/ws"
}

// firstLine is an io.Writer that passes on the first line written to it.
type firstLine struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	sent bool
	line chan string // gets the first line, without its newline
}

func newFirstLine() *firstLine { return &firstLine{line: make(chan string, 1)} }

func (w *firstLine) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if line, _, ok := strings.Cut(w.buf.String(), "\n"); ok && !w.sent {
		w.sent = true
		w.line <- line
	}
	return len(p), nil
}

func TestHelp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string // a line the help must hold
	}{
		{[]string{"--help"}, "Usage: wsrpc <command> [flags] [arguments]"},
		{[]string{"-h"}, "Usage: wsrpc <command> [flags] [arguments]"},
		{[]string{"help"}, "Usage: wsrpc <command> [flags] [arguments]"},
		{[]string{"serve", "--help"}, "Usage: wsrpc serve [flags]"},
		{[]string{"serve", "-h"}, "Usage: wsrpc serve [flags]"},
		{[]string{"help", "serve"}, "Usage: wsrpc serve [flags]"},
		{[]string{"call", "--help"}, "Usage: wsrpc call [flags] URL METHOD [key=value ...]"},
		{[]string{"call", "-h"}, "Usage: wsrpc call [flags] URL METHOD [key=value ...]"},
		{[]string{"call", "ws://127.0.0.1:1/ws", "add", "--help"}, "Usage: wsrpc call [flags] URL METHOD [key=value ...]"},
		{[]string{"help", "call"}, "Usage: wsrpc call [flags] URL METHOD [key=value ...]"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			r := runCmd(t, "", tt.args...)
			if r.code != 0 || r.stderr != "" {
				t.Errorf("exit %d, stderr %q; want 0 and nothing", r.code, r.stderr)
			}
			if !strings.Contains(r.stdout, tt.want+"\n") {
				t.Errorf("stdout does not hold %q:\n%s", tt.want, r.stdout)
			}
			if !strings.Contains(r.stdout, "Examples:\n") {
				t.Errorf("stdout has no examples:\n%s", r.stdout)
			}
		})
	}
}

// TestHelpListsEveryFlag keeps the hand-written help of each command in
// step with the flags it defines.
func TestHelpListsEveryFlag(t *testing.T) {
	t.Parallel()
	flagSets := map[string]*flag.FlagSet{
		"serve": new(serveFlags).flagSet(),
		"call":  new(callFlags).flagSet(),
		"bench": new(benchFlags).flagSet(),
		"idle":  new(idleFlags).flagSet(),
	}
	for _, c := range commands {
		fs, ok := flagSets[c.name]
		if !ok {
			t.Fatalf("command %q: add its flag set to this test", c.name)
		}
		help := runCmd(t, "", c.name, "--help").stdout
		fs.VisitAll(func(f *flag.Flag) {
			if !strings.Contains(help, "\n  -"+f.Name+" ") && !strings.Contains(help, "\n  --"+f.Name+" ") {
				t.Errorf("wsrpc %s --help does not list -%s", c.name, f.Name)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string // on stderr
	}{
		{"no command", nil, "Usage: wsrpc <command> [flags] [arguments]"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"call", "--nope", "ws://127.0.0.1:1/ws", "add"}, "flag provided but not defined: -nope"},
		{"no method", []string{"call", "ws://127.0.0.1:1/ws"}, "want URL and METHOD"},
		{"pair without =", []string{"call", "ws://127.0.0.1:1/ws", "add", "a"}, `argument "a": want key=value`},
		{"args not an object", []string{"call", "--args", "[1]", "ws://127.0.0.1:1/ws", "add"}, "--args: want a JSON object"},
		{"args not JSON", []string{"call", "--args", "{", "ws://127.0.0.1:1/ws", "add"}, "--args: want a JSON object"},
		{"bad header", []string{"call", "--header", "nocolon", "ws://127.0.0.1:1/ws", "add"}, `want "Key: value"`},
		{"bad timeout", []string{"call", "--timeout", "soon", "ws://127.0.0.1:1/ws", "add"}, "invalid value"},
		{"serve argument", []string{"serve", "extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runCmd(t, "", tt.args...)
			if r.code != exitFail {
				t.Errorf("exit %d, want %d", r.code, exitFail)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr %q does not hold %q", r.stderr, tt.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}
}

// deadURL returns a ws:// URL on 127.0.0.1 where nothing listens.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() // nothing listens there once it returns
	return "ws://" + ln.Addr().String() + "/ws"
}
