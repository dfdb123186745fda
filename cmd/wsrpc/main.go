// Wsrpc serves and calls RPC methods over WebSockets, with the wire protocol
// of the Python library fastapi_websocket_rpc, so that it talks to Go and
// Python peers alike.
//
// Usage:
//
//	wsrpc <command> [flags] [arguments]
//	wsrpc --version
//
// The commands are:
//
//	serve    run the demo server: add, multiply, concat, the utility
//	         methods, the register_wake_up_call trigger and pub/sub (the
//	         time every second on topic "time"), on /ws, /ws/{client_id},
//	         /pubsub and /pubsub/{client_id}
//	call     call one method on a server and print its result as JSON
//	sub      subscribe to topics and print each event as a line of JSON
//	pub      publish one event
//	bench    measure a server's throughput and latency with echo calls
//	idle     hold many idle connections open, for memory tests
//	version  print the module version and the VCS revision the binary
//	         was built from (also: wsrpc --version)
//
// Run "wsrpc <command> --help" for a command's flags and examples.
// Durations are written with a unit: 500ms, 5s, 1m.
//
// The exit status is 0 on success, 1 when a called method answered with an
// error (for sub and pub: the server refused), and 2 for anything else that
// went wrong: bad usage, a server that cannot be reached or refuses the
// connection, a timeout, an interrupted call, pub or bench (SIGINT or
// SIGTERM: "wsrpc: interrupted"). "wsrpc call --timeout" bounds the whole
// command, closing the connection included. serve, idle and sub run until
// SIGINT or SIGTERM (sub: or --count events) and then exit with 0; serve
// does so even when calls still running had to be cut after its 5 s drain,
// and logs how many connections it cut at WARN.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"
)

// Exit statuses.
const (
	exitOK     = 0 // success, or help was asked for
	exitRemote = 1 // the called method answered with an error
	exitFail   = 2 // bad usage, or the command could not do its job
)

// stdio is what a command reads from and writes to.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

// A command is one subcommand of wsrpc. Adding a subcommand means adding an
// entry to commands.
type command struct {
	name    string
	summary string // one line, for the list of commands
	run     func(ctx context.Context, args []string, std stdio) int
}

// commands lists the subcommands in the order the usage shows them.
var commands = []command{
	{"serve", "run the demo server", runServe},
	{"call", "call one method and print its result as JSON", runCall},
	{"sub", "subscribe to topics and print each event as a line of JSON", runSub},
	{"pub", "publish one event on a topic", runPub},
	{"bench", "measure a server's throughput and latency with echo calls", runBench},
	{"idle", "hold many idle connections open, for memory tests", runIdle},
	{"version", "print the version and the VCS revision it was built from", runVersion},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop) // after the first signal, a second one kills at once
	stopProfile := profile(os.Getenv("WSRPC_CPUPROFILE"))
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	stopProfile()
	os.Exit(code)
}

// profile writes a CPU profile of the whole command to path, if not empty
// (WSRPC_CPUPROFILE=cpu.prof wsrpc serve ...), until the returned function
// runs.
func profile(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "wsrpc: WSRPC_CPUPROFILE:", err)
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// run runs the command line args (without the program name) and returns
// the exit status. ctx ends the command early, as SIGINT does.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	std := stdio{in: stdin, out: stdout, err: stderr}
	if len(args) == 0 {
		usage(stderr)
		return exitFail
	}
	name, rest := args[0], args[1:]
	switch name {
	case "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	case "-version", "--version":
		name, rest = "version", nil
	case "help": // wsrpc help [command]
		if len(rest) == 0 {
			usage(stdout)
			return exitOK
		}
		name, rest = rest[0], []string{"--help"}
	}
	for _, c := range commands {
		if c.name == name {
			return c.run(ctx, rest, std)
		}
	}
	fmt.Fprintf(stderr, "wsrpc: unknown command %q\n\n", name)
	usage(stderr)
	return exitFail
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: wsrpc <command> [flags] [arguments]

wsrpc serves and calls RPC methods over WebSockets, with the wire protocol
of the Python library fastapi_websocket_rpc, and pub/sub as
fastapi_websocket_pubsub does it.

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s%s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run 'wsrpc <command> --help' for a command's flags and examples.

Flags:
  --version   print the version, as 'wsrpc version' does

Exit status: 0 on success, and for serve, idle and sub after SIGINT or
SIGTERM; 1 when a called method answered with an error (sub, pub: the
server refused); 2 for anything else: bad usage, a server that cannot be
reached or refuses the connection, a timeout, an interrupted call, pub or
bench.

Examples:
  wsrpc serve --addr 127.0.0.1:9000
  wsrpc call ws://127.0.0.1:9000/ws add a=1 b=2
  wsrpc sub ws://127.0.0.1:9000/pubsub time
  wsrpc pub ws://127.0.0.1:9000/pubsub news '{"id": 7}'
  wsrpc --version
`)
}

const versionHelp = `Usage: wsrpc version

Print wsrpc's module version and the VCS revision it was built from, as
the Go toolchain recorded them in the binary (runtime/debug.ReadBuildInfo).
"go install github.com/wsrpc/wsrpc/cmd/wsrpc@v1.2.3" records v1.2.3. A
build from a clone records the commit's revision, and as the version a
pseudo-version made from it (v0.0.0-20260102150405-51d684e0c166, Go 1.24
and later), or (devel) when the build has no VCS information (go run,
-buildvcs=false). "(modified)" and "+dirty" mean the working tree had
uncommitted changes.

Examples:
  wsrpc version
  wsrpc --version
`

func runVersion(_ context.Context, args []string, std stdio) int {
	pos, code, ok := parseArgs(newFlagSet("version"), args, versionHelp, std)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(std, "version", fmt.Sprintf("unexpected argument %q", pos[0]))
	}
	fmt.Fprintln(std.out, versionText(debug.ReadBuildInfo()))
	return exitOK
}

// versionText is the line wsrpc version prints, such as
//
//	wsrpc (devel), revision 51d684e4c1f2b3a4d5e6f708192a3b4c5d6e7f80 (modified), go1.26.0
func versionText(bi *debug.BuildInfo, ok bool) string {
	if !ok {
		return "wsrpc (unknown version: the binary has no build information)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)" // as the toolchain says for a build without VCS information
	}
	text := "wsrpc " + v
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev != "" {
		text += ", revision " + rev
		if modified == "true" {
			text += " (modified)"
		}
	}
	if bi.GoVersion != "" {
		text += ", " + bi.GoVersion
	}
	return text
}

// newFlagSet returns a flag set that reports nothing itself: parseArgs
// prints help and errors.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseArgs parses args with fs, letting flags and positional arguments
// interleave ("--" ends the flags), and returns the positional arguments.
// On --help it prints help to stdout; on a bad flag it prints the error to
// stderr. In both cases ok is false and code is the exit status.
func parseArgs(fs *flag.FlagSet, args []string, help string, std stdio) (pos []string, code int, ok bool) {
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(std.out, help)
			return nil, exitOK, false
		}
		if err != nil {
			msg := err.Error()
			fs.VisitAll(func(f *flag.Flag) {
				if d, ok := f.Value.(*durationFlag); ok && d.err != nil {
					msg = d.err.Error() // in full, without the flag package's wrapping
				}
			})
			return nil, usageError(std, fs.Name(), msg), false
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), 0, true
		}
		if len(rest) == 0 {
			return pos, 0, true
		}
		pos = append(pos, rest[0]) // every round consumes at least this
		args = rest[1:]
	}
}

// durationFlag is a time.Duration flag whose error says what a duration
// looks like: flag.Duration's says only "parse error", and a bare number
// ("--timeout 5") is the likely mistake.
type durationFlag struct {
	name string
	d    *time.Duration
	err  error // why the last Set failed, for parseArgs
}

// durationVar defines the duration flag name on fs, stored in p.
func durationVar(fs *flag.FlagSet, p *time.Duration, name string, value time.Duration) {
	*p = value
	fs.Var(&durationFlag{name: name, d: p}, name, "")
}

func (f *durationFlag) String() string {
	if f.d == nil {
		return ""
	}
	return f.d.String()
}

func (f *durationFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		what := "want a duration"
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			what = "a duration needs a unit"
		}
		f.err = fmt.Errorf("invalid --%s %q: %s, such as 5s, 500ms or 1m", f.name, s, what)
		return f.err
	}
	*f.d, f.err = d, nil
	return nil
}

// usageError reports a usage error of the command name and returns exitFail.
func usageError(std stdio, name, msg string) int {
	fmt.Fprintf(std.err, "wsrpc %s: %s\nRun 'wsrpc %s --help' for usage.\n", name, msg, name)
	return exitFail
}

// failure prints the command's own error err on stderr, after the
// program's "wsrpc: ", and returns exitFail. The library's errors begin
// with "wsrpc: " already: callFailure prints those as they are.
func failure(std stdio, err error) int {
	fmt.Fprintln(std.err, "wsrpc: "+err.Error())
	return exitFail
}
