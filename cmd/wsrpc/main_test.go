package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/wsrpc/wsrpc"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { removeBinary() }))
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
	_, url := startDemoWith(t, token, nil)
	return url
}

// startDemoWith is startDemo; it returns the demo server too, after setup,
// if not nil, adjusted it.
func startDemoWith(t *testing.T, token string, setup func(*demo)) (*demo, string) {
	t.Helper()
	d, err := newDemo(demoConfig{token: token, logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(d)
	}
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
	return d, "ws://" + ln.Addr().String() + "/ws"
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
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
		{[]string{"--help"}, "  --version   print the version, as 'wsrpc version' does"},
		{[]string{"sub", "--help"}, "Usage: wsrpc sub [flags] URL TOPIC..."},
		{[]string{"pub", "--help"}, "Usage: wsrpc pub [flags] URL TOPIC [DATA]"},
		{[]string{"version", "--help"}, "Usage: wsrpc version"},
		{[]string{"help", "version"}, "Usage: wsrpc version"},
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
		"serve":   new(serveFlags).flagSet(),
		"call":    new(callFlags).flagSet(),
		"bench":   new(benchFlags).flagSet(),
		"idle":    new(idleFlags).flagSet(),
		"sub":     new(pubsubFlags).flagSet("sub"),
		"pub":     new(pubsubFlags).flagSet("pub"),
		"version": newFlagSet("version"),
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
	const url = "ws://127.0.0.1:1/ws"
	tests := []struct {
		name  string
		args  []string
		stdin string
		want  string // on stderr
	}{
		{"no command", nil, "", "Usage: wsrpc <command> [flags] [arguments]"},
		{"unknown command", []string{"frobnicate"}, "", `unknown command "frobnicate"`},
		{"unknown flag", []string{"call", "--nope", url, "add"}, "", "flag provided but not defined: -nope"},
		{"no method", []string{"call", url}, "", "want URL and METHOD"},
		{"pair without =", []string{"call", url, "add", "a"}, "", `argument "a": want key=value`},
		{"args an array", []string{"call", "--args", "[1]", url, "add"}, "",
			`wsrpc call: --args: must be a JSON object, such as {"a": 1}, not an array` + "\n"},
		{"args a string", []string{"call", "--args", `"a=1"`, url, "add"}, "",
			`wsrpc call: --args: must be a JSON object, such as {"a": 1}, not a string` + "\n"},
		{"args null", []string{"call", "--args", "null", url, "add"}, "",
			`wsrpc call: --args: must be a JSON object, such as {"a": 1}, not null` + "\n"},
		{"args bad JSON", []string{"call", "--args", `{"a":1,}`, url, "add"}, "",
			"wsrpc call: --args: invalid JSON at byte 8: invalid character '}' looking for beginning of object key string\n"},
		{"args bad JSON on stdin", []string{"call", "--args", "-", url, "add"}, `{"a": 1} {"b": 2}`,
			"wsrpc call: --args: invalid JSON at byte 10: invalid character '{' after top-level value\n"},
		{"args cut short", []string{"call", "--args", `{"a": [1, 2`, url, "add"}, "",
			"wsrpc call: --args: invalid JSON: it ends before the value is complete\n"},
		{"bad header", []string{"call", "--header", "nocolon", url, "add"}, "", `want "Key: value"`},
		{"bad timeout", []string{"call", "--timeout", "soon", url, "add"}, "",
			`wsrpc call: invalid --timeout "soon": want a duration, such as 5s, 500ms or 1m` + "\n"},
		{"timeout without a unit", []string{"call", "--timeout", "5", url, "add"}, "",
			`wsrpc call: invalid --timeout "5": a duration needs a unit, such as 5s, 500ms or 1m` + "\n"},
		{"bench duration without a unit", []string{"bench", "--duration", "10", url}, "",
			`wsrpc bench: invalid --duration "10": a duration needs a unit, such as 5s, 500ms or 1m` + "\n"},
		{"idle keepalive without a unit", []string{"idle", url, "--keepalive=1.5"}, "",
			`wsrpc idle: invalid --keepalive "1.5": a duration needs a unit, such as 5s, 500ms or 1m` + "\n"},
		{"serve argument", []string{"serve", "extra"}, "", `unexpected argument "extra"`},
		{"sub without topic", []string{"sub", url}, "", "want URL and at least one TOPIC"},
		{"sub negative count", []string{"sub", "--count", "-1", url, "t"}, "", "--count must not be negative"},
		{"pub without topic", []string{"pub", url}, "", "want URL, TOPIC and at most one DATA"},
		{"pub extra argument", []string{"pub", url, "t", "1", "2"}, "", "want URL, TOPIC and at most one DATA"},
		{"version argument", []string{"version", "extra"}, "", `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runCmd(t, tt.stdin, tt.args...)
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

// TestVersion checks the three ways to ask for the version.
func TestVersion(t *testing.T) {
	t.Parallel()
	want := versionText(debug.ReadBuildInfo()) + "\n"
	if !strings.HasPrefix(want, "wsrpc (devel)") {
		t.Errorf("a test binary's version is %q, want it to begin with %q", want, "wsrpc (devel)")
	}
	for _, args := range [][]string{{"--version"}, {"-version"}, {"version"}} {
		r := runCmd(t, "", args...)
		if r.code != exitOK || r.stdout != want || r.stderr != "" {
			t.Errorf("wsrpc %s: exit %d, stdout %q, stderr %q; want 0, %q and nothing",
				strings.Join(args, " "), r.code, r.stdout, r.stderr, want)
		}
	}
}

func TestVersionText(t *testing.T) {
	t.Parallel()
	const rev = "51d684e0c1663326bff1471c23de81316f91806c"
	vcs := func(modified string) []debug.BuildSetting {
		return []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: rev},
			{Key: "vcs.time", Value: "2026-11-25T05:33:30Z"},
			{Key: "vcs.modified", Value: modified},
		}
	}
	tests := []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{"built from a clone", &debug.BuildInfo{GoVersion: "go1.26.0",
			Main: debug.Module{Path: "github.com/wsrpc/wsrpc", Version: "(devel)"}, Settings: vcs("false")},
			"wsrpc (devel), revision " + rev + ", go1.26.0"},
		{"with uncommitted changes", &debug.BuildInfo{GoVersion: "go1.26.0",
			Main: debug.Module{Path: "github.com/wsrpc/wsrpc", Version: "(devel)"}, Settings: vcs("true")},
			"wsrpc (devel), revision " + rev + " (modified), go1.26.0"},
		{"go install @version", &debug.BuildInfo{GoVersion: "go1.26.0",
			Main: debug.Module{Path: "github.com/wsrpc/wsrpc", Version: "v1.2.3"}},
			"wsrpc v1.2.3, go1.26.0"},
		{"no version", &debug.BuildInfo{}, "wsrpc (devel)"},
	}
	for _, tt := range tests {
		if got := versionText(tt.bi, true); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
	if got := versionText(nil, false); !strings.Contains(got, "unknown version") {
		t.Errorf("without build information: %q, want it to say the version is unknown", got)
	}
}
