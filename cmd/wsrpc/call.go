package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/wsrpc/wsrpc"
)

const callHelp = `Usage: wsrpc call [flags] URL METHOD [key=value ...]

Call METHOD on the server at URL (ws://, wss://, http:// or https://; no
scheme means ws://) and print its result as JSON on stdout.

Each key=value is one keyword argument. The value is JSON if it is valid
JSON, else a string: a=1 is the number 1, a=true a boolean, a=hello the
string "hello", a='"1"' the string "1". Pairs override the keys of --args.
Flags may come before or after the arguments; -- ends the flags.

While the call runs, the server may call back the utility methods echo,
get_process_details, call_me_back and get_response.

Flags:
  --args JSON     keyword arguments as a JSON object; "-" reads it from stdin
  --header K:V    add the header K to the upgrade request (repeatable)
  --timeout D     bound the whole command: connecting, the call and closing
                  (default 10s; 0: none); D has a unit: 500ms, 5s, 1m
  -v              log the connection to stderr

Exit status: 0 on success; 1 when the method answered with an error, whose
code and message go to stderr; 2 for any other failure: bad usage, no
server, connection refused (401, 403), timeout, interruption (SIGINT or
SIGTERM: "wsrpc: interrupted").

Examples:
  wsrpc call ws://127.0.0.1:9000/ws add a=1 b=2
  wsrpc call ws://127.0.0.1:9000/ws concat a=hello 'b= world'
  wsrpc call ws://127.0.0.1:9000/ws echo text=hi --header 'X-Token: secret'
  echo '{"a": 6}' | wsrpc call 127.0.0.1:9000/ws multiply --args - b=7
`

// dialTries caps the connect attempts, so that a dead server fails fast.
const dialTries = 3

// headerFlag is the repeatable --header flag.
type headerFlag http.Header

func (h headerFlag) String() string { return "" }

func (h headerFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, ":")
	k = strings.TrimSpace(k)
	if !ok || k == "" {
		return errors.New(`want "Key: value"`)
	}
	http.Header(h).Add(k, strings.TrimSpace(v))
	return nil
}

// callFlags are the flags of wsrpc call.
type callFlags struct {
	args    string
	header  http.Header
	timeout time.Duration
	verbose bool
}

func (f *callFlags) flagSet() *flag.FlagSet {
	fs := newFlagSet("call")
	fs.StringVar(&f.args, "args", "", "")
	f.header = make(http.Header)
	fs.Var(headerFlag(f.header), "header", "")
	durationVar(fs, &f.timeout, "timeout", 10*time.Second)
	fs.BoolVar(&f.verbose, "v", false, "")
	return fs
}

func runCall(ctx context.Context, args []string, std stdio) int {
	var f callFlags
	pos, code, ok := parseArgs(f.flagSet(), args, callHelp, std)
	if !ok {
		return code
	}
	if len(pos) < 2 {
		return usageError(std, "call", "want URL and METHOD")
	}
	url, method := pos[0], pos[1]
	if !strings.Contains(url, "://") {
		url = "ws://" + url
	}
	if f.args == "-" {
		b, err := io.ReadAll(std.in)
		if err != nil {
			return failure(std, fmt.Errorf("reading --args from stdin: %w", err))
		}
		f.args = string(b)
	}
	params, err := callArgs(f.args, pos[2:])
	if err != nil {
		return usageError(std, "call", err.Error())
	}

	if f.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.timeout)
		defer cancel()
	}
	logger := slog.New(slog.DiscardHandler)
	if f.verbose {
		logger = slog.New(slog.NewTextHandler(std.err, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	methods := wsrpc.NewMux()
	wsrpc.RegisterUtilities(methods)
	var socks sockets
	client, err := wsrpc.Dial(ctx, url, &wsrpc.DialOptions{
		Methods:          methods,
		Header:           f.header,
		NetDialContext:   socks.dial,
		Retry:            wsrpc.RetryOptions{MaxTries: dialTries},
		DisableReconnect: true,
		ConnOptions: wsrpc.ConnOptions{
			Logger: logger,
		},
	})
	if err != nil {
		return callFailure(ctx, std, f.timeout, err)
	}
	defer closeWithin(ctx, func() { client.Close() }, &socks)

	var result json.RawMessage
	if err := client.Call(ctx, method, params, &result); err != nil {
		return callFailure(ctx, std, f.timeout, err)
	}
	var out bytes.Buffer
	if err := json.Compact(&out, result); err != nil {
		return failure(std, fmt.Errorf("the result is not JSON: %w", err))
	}
	out.WriteByte('\n')
	std.out.Write(out.Bytes())
	return exitOK
}

// sockets keeps the TCP connections a client opens (its NetDialContext),
// so that they can be closed under it when the command's time is up.
type sockets struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (s *sockets) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := new(net.Dialer).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.conns = append(s.conns, c)
	s.mu.Unlock()
	return c, nil
}

func (s *sockets) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

// callArgs merges the key=value pairs onto the JSON object argsJSON.
func callArgs(argsJSON string, pairs []string) (json.RawMessage, error) {
	args := make(map[string]json.RawMessage)
	if strings.TrimSpace(argsJSON) != "" {
		var err error
		if args, err = argsObject(argsJSON); err != nil {
			return nil, fmt.Errorf("--args: %w", err)
		}
	}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("argument %q: want key=value", p)
		}
		args[k] = argValue(v)
	}
	return json.Marshal(args)
}

// argsObject decodes the JSON object s, or says what is wrong with it.
func argsObject(s string) (map[string]json.RawMessage, error) {
	var args map[string]json.RawMessage
	err := json.Unmarshal([]byte(s), &args)
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		if se.Offset >= int64(len(s)) && strings.HasPrefix(se.Error(), "unexpected end") {
			return nil, errors.New("invalid JSON: it ends before the value is complete")
		}
		// Offset counts the bytes read, the bad one included: it is the
		// bad byte's position, counting from 1.
		return nil, fmt.Errorf("invalid JSON at byte %d: %v", se.Offset, se)
	}
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		return nil, fmt.Errorf("must be a JSON object, such as {\"a\": 1}, not %s", jsonKind(te.Value))
	}
	if err != nil {
		return nil, err
	}
	if args == nil {
		return nil, errors.New("must be a JSON object, such as {\"a\": 1}, not null")
	}
	return args, nil
}

// jsonKind names a kind of JSON value, as json.UnmarshalTypeError.Value
// does, with its article.
func jsonKind(v string) string {
	switch v {
	case "array":
		return "an array"
	case "bool":
		return "a boolean"
	}
	return "a " + v // number, string
}

// argValue is v as JSON if it is valid JSON, else as a JSON string.
func argValue(v string) json.RawMessage {
	if json.Valid([]byte(v)) {
		return json.RawMessage(v)
	}
	b, _ := json.Marshal(v) // a string always encodes
	return b
}

// callFailure reports why a call did not succeed, err being the library's
// error, and returns its exit status. err's text begins with "wsrpc: ", as
// the command's own messages do, and is printed as it is.
func callFailure(ctx context.Context, std stdio, timeout time.Duration, err error) int {
	if e, ok := errors.AsType[*wsrpc.Error](err); ok {
		fmt.Fprintln(std.err, e.Error())
		if len(e.Data) > 0 {
			fmt.Fprintf(std.err, "wsrpc: error data: %s\n", e.Data)
		}
		return exitRemote
	}
	// An error status is a refusal. A 2xx or 3xx answer (a web page, a
	// redirect) is no refusal: the library's error says what it is, "not
	// a WebSocket endpoint: HTTP 200 OK, expected 101 Switching Protocols".
	if he, ok := errors.AsType[*wsrpc.HTTPError](err); ok && he.StatusCode >= 400 {
		status := http.StatusText(he.StatusCode)
		msg := fmt.Sprintf("the server refused the connection: %d %s", he.StatusCode, status)
		if he.Message != "" && he.Message != status {
			msg += ": " + he.Message
		}
		return failure(std, errors.New(msg))
	}
	switch cerr := ctx.Err(); {
	case errors.Is(cerr, context.Canceled):
		// SIGINT or SIGTERM: whatever the client made of its context
		// ending (a canceled context, an i/o timeout on the socket) is
		// noise.
		return failure(std, errors.New("interrupted"))
	case errors.Is(cerr, context.DeadlineExceeded):
		// What happened, then the library's account of it.
		fmt.Fprintf(std.err, "wsrpc: timed out after %v\n%v\n", timeout, err)
		return exitFail
	}
	fmt.Fprintln(std.err, err) // the library's "wsrpc: ..."
	return exitFail
}
