package wsrpc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/scanner"
	"go/token"
	"log/slog"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/wsrpc/wsrpc"
)

// ConcatArgs are the keyword arguments of concat: {"a": ..., "b": ...}.
type ConcatArgs struct {
	A string `json:"a"`
	B string `json:"b"`
}

// A server exposing concat, and a client calling it.
func Example() {
	ctx := context.Background()

	// Server: a Mux of methods, served as an http.Handler.
	mux := wsrpc.NewMux()
	wsrpc.Register(mux, "concat", func(ctx context.Context, a ConcatArgs) (string, error) {
		return a.A + a.B, nil
	})
	srv, err := wsrpc.NewServer(mux, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{Logger: slog.New(slog.DiscardHandler)}})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv) // or http.Handle("/ws", srv) on your server
	defer hs.Close()
	url := "ws" + strings.TrimPrefix(hs.URL, "http")

	// Client: dial, call, decode the result.
	cl, err := wsrpc.Dial(ctx, url, &wsrpc.DialOptions{ConnOptions: wsrpc.ConnOptions{Logger: slog.New(slog.DiscardHandler)}})
	if err != nil {
		panic(err)
	}
	defer cl.Close()
	s, err := wsrpc.Call[string](ctx, cl, "concat", ConcatArgs{A: "hello", B: " world"})
	fmt.Println(s, err)
	// Output: hello world <nil>
}

// The server's handler calls back a method of the client while the
// client's call to it is still open.
func Example_bidirectional() {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)

	server := wsrpc.NewMux()
	wsrpc.Register(server, "greet", func(ctx context.Context, a struct {
		Name string `json:"name"`
	}) (string, error) {
		caller := wsrpc.ConnFromContext(ctx)
		lang, err := wsrpc.Call[string](ctx, caller, "language", nil)
		if err != nil {
			return "", err
		}
		if lang == "fr" {
			return "bonjour " + a.Name, nil
		}
		return "hello " + a.Name, nil
	})
	srv, err := wsrpc.NewServer(server, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{Logger: quiet}})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv)
	defer hs.Close()

	client := wsrpc.NewMux()
	wsrpc.Register(client, "language", func(context.Context, struct{}) (string, error) {
		return "fr", nil
	})
	cl, err := wsrpc.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http"), &wsrpc.DialOptions{Methods: client, ConnOptions: wsrpc.ConnOptions{Logger: quiet}})
	if err != nil {
		panic(err)
	}
	defer cl.Close()
	fmt.Println(wsrpc.Call[string](ctx, cl, "greet", map[string]any{"name": "Ada"}))
	// Output: bonjour Ada <nil>
}

// Errors are values: a remote error carries its JSON-RPC code.
func ExampleError() {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	mux := wsrpc.NewMux()
	wsrpc.Register(mux, "divide", func(ctx context.Context, a struct{ X, Y float64 }) (float64, error) {
		if a.Y == 0 {
			return 0, &wsrpc.Error{Code: 1001, Message: "division by zero"}
		}
		return a.X / a.Y, nil
	})
	srv, err := wsrpc.NewServer(mux, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{Logger: quiet}})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv)
	defer hs.Close()
	cl, err := wsrpc.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http"), &wsrpc.DialOptions{ConnOptions: wsrpc.ConnOptions{Logger: quiet}})
	if err != nil {
		panic(err)
	}
	defer cl.Close()

	_, err = wsrpc.Call[float64](ctx, cl, "divide", map[string]float64{"X": 1, "Y": 0})
	var e *wsrpc.Error
	if errors.As(err, &e) {
		fmt.Printf("%d %s\n", e.Code, e.Message)
	}
	_, err = wsrpc.Call[float64](ctx, cl, "divide", map[string]float64{"X": 1})
	fmt.Println(wsrpc.ErrorCode(err) == wsrpc.CodeInvalidParams)
	fmt.Println(err)
	// Output:
	// 1001 division by zero
	// true
	// wsrpc: call "divide": remote error -32602 (invalid params): missing required argument "Y"
}

// Client.Call decodes the result into a value of the caller's; its error
// says what became of the call.
func ExampleClient_Call() {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	mux := wsrpc.NewMux()
	wsrpc.Register(mux, "add", func(_ context.Context, a struct {
		A float64 `json:"a"`
		B float64 `json:"b"`
	}) (float64, error) {
		return a.A + a.B, nil
	})
	srv, err := wsrpc.NewServer(mux, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{Logger: quiet}})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv)
	defer hs.Close()
	cl, err := wsrpc.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http"), &wsrpc.DialOptions{ConnOptions: wsrpc.ConnOptions{Logger: quiet}})
	if err != nil {
		panic(err)
	}
	defer cl.Close()

	var sum float64
	err = cl.Call(ctx, "add", map[string]any{"a": 1, "b": 2}, &sum) // or sum, err = wsrpc.Call[float64](...)
	var e *wsrpc.Error
	switch {
	case err == nil:
		fmt.Println(sum)
	case errors.Is(err, wsrpc.ErrTooManyCalls), errors.Is(err, wsrpc.ErrShuttingDown): // the server is busy or going away: try later
	case errors.As(err, &e): // the peer answered with an error: e.Code, e.Message, e.Data
		fmt.Println(e.Code, e.Message)
	case errors.Is(err, context.DeadlineExceeded): // timed out (the ctx's deadline, or CallTimeout)
	case errors.Is(err, wsrpc.ErrConnectionLost): // the link dropped mid-call: the outcome is unknown
	case errors.Is(err, wsrpc.ErrNotConnected): // the client is reconnecting (see WaitForReady)
	case errors.Is(err, wsrpc.ErrClosed): // closed by this side
	}
	// Output: 3
}

// CallWith takes the options of one call: an idempotent call is sent
// again when the link drops before its answer arrives.
func ExampleClient_CallWith() {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	mux := wsrpc.NewMux()
	wsrpc.Register(mux, "balance", func(_ context.Context, a struct {
		Account string `json:"account"`
	}) (int, error) {
		return 42, nil
	})
	srv, err := wsrpc.NewServer(mux, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{Logger: quiet}})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv)
	defer hs.Close()
	cl, err := wsrpc.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http"), &wsrpc.DialOptions{ConnOptions: wsrpc.ConnOptions{Logger: quiet}})
	if err != nil {
		panic(err)
	}
	defer cl.Close()

	var balance int
	args := map[string]string{"account": "a-1"}
	// A read is safe to run twice: if the link drops, it is sent again on the
	// next connection (waiting for it), all within ctx.
	err = cl.CallWith(ctx, "balance", args, &balance, wsrpc.CallOptions{Idempotent: true})
	fmt.Println(balance, err)
	// Output: 42 <nil>
}

// Client.Go makes calls without waiting for their answers: each answer
// goes to the call's done function, which decodes it.
func ExampleClient_Go() {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	mux := wsrpc.NewMux()
	wsrpc.Register(mux, "square", func(_ context.Context, a struct {
		X int `json:"x"`
	}) (int, error) {
		return a.X * a.X, nil
	})
	srv, err := wsrpc.NewServer(mux, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{Logger: quiet}})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv)
	defer hs.Close()
	cl, err := wsrpc.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http"), &wsrpc.DialOptions{ConnOptions: wsrpc.ConnOptions{Logger: quiet}})
	if err != nil {
		panic(err)
	}
	defer cl.Close()

	squares := make([]int, 5)
	var wg sync.WaitGroup
	for i := range squares { // the requests go out in this order, all at once
		wg.Add(1)
		err := cl.Go(ctx, "square", map[string]int{"x": i}, func(r *wsrpc.Reply) {
			defer wg.Done()
			if err := r.Decode(&squares[i]); err != nil { // r is valid only until done returns
				fmt.Println(err)
			}
		})
		if err != nil { // not sent: done is not called
			wg.Done()
			fmt.Println(err)
		}
	}
	wg.Wait()
	fmt.Println(squares)
	// Output: [0 1 4 9 16]
}

// A handler that reads a large argument at once borrows it from the
// frame, without a copy; it must not keep it past its return.
func ExampleRawText() {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)

	mux := wsrpc.NewMux()
	wsrpc.Register(mux, "count_lines", func(_ context.Context, a struct {
		Text wsrpc.RawText `json:"text"`
	}) (int, error) {
		return bytes.Count(a.Text, []byte("\n")), nil // a.Text is not kept
	})
	srv, err := wsrpc.NewServer(mux, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{Logger: quiet}})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv)
	defer hs.Close()

	cl, err := wsrpc.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http"), &wsrpc.DialOptions{ConnOptions: wsrpc.ConnOptions{Logger: quiet}})
	if err != nil {
		panic(err)
	}
	defer cl.Close()
	n, err := wsrpc.Call[int](ctx, cl, "count_lines", map[string]string{"text": "one\ntwo\nthree\n"})
	fmt.Println(n, err)
	// Output: 3 <nil>
}

// TestREADMEGoSnippets checks that every Go snippet in README.md is code
// that the tests compile and run, so that none of them goes stale:
//
//   - A whole program is an examples/ program's main.go, byte for byte
//     (its test runs main and checks the output).
//   - A fragment is gofmt-clean and, comments aside, a contiguous run of
//     an Example's body, or of a program, here with one text replaced
//     (a URL the tests cannot dial).
//
// A new Go snippet in README.md needs a line in the table below.
func TestREADMEGoSnippets(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?ms)^```go\n(.*?)^```$").FindAllStringSubmatch(string(readme), -1)
	// In the order of README.md. A snippet with neither example nor
	// readme is all of file, byte for byte.
	sources := []struct {
		section  string // README.md's heading, for messages
		file     string // a program, or example_test.go
		example  string // an Example function in file; "" for all of file
		readme   string // text of the snippet that stands for ...
		replaced string // ... this text of the source
	}{
		{section: "A server and a client in 30 seconds", file: "examples/simple/main.go"},
		{section: "Calling back, nesting, hooks", file: "examples/bidirectional/main.go"},
		{section: "Python interoperability", file: "examples/simple/main.go",
			readme: `"ws://127.0.0.1:9000/ws"`, replaced: `"ws://"+ln.Addr().String()+"/ws"`},
		{section: "Calls and errors", file: "example_test.go", example: "ExampleClient_Call"},
		{section: "Retrying idempotent calls", file: "example_test.go", example: "ExampleClient_CallWith"},
		{section: "Many calls in flight", file: "example_test.go", example: "ExampleClient_Go"},
		{section: "Large arguments without a copy", file: "example_test.go", example: "ExampleRawText"},
		{section: "Pub/sub", file: "pubsub/example_test.go", example: "Example"},
		{section: "Pub/sub", file: "pubsub/example_test.go", example: "Example"},
		{section: "Observability", file: "promwsrpc/example_test.go", example: "ExampleNew"},
		{section: "NATS", file: "natsbroker/example_test.go", example: "ExampleNew"},
	}
	if len(blocks) != len(sources) {
		t.Fatalf("README.md has %d Go snippets, this test knows %d: add each new one to the table", len(blocks), len(sources))
	}
	for i, src := range sources {
		snippet := blocks[i][1]
		text, err := os.ReadFile(src.file)
		if err != nil {
			t.Fatal(err)
		}
		if src.example == "" && src.readme == "" {
			if snippet != string(text) {
				t.Errorf("%s: README.md's program is not %s as it is; copy the file into README.md", src.section, src.file)
			}
			continue
		}
		if formatted, err := format.Source([]byte(snippet)); err != nil || string(formatted) != snippet {
			t.Errorf("%s: README.md's snippet is not gofmt-clean (%v):\n%s", src.section, err, formatted)
		}
		where := src.file
		if src.example != "" {
			text = functionBody(t, src.file, text, src.example)
			where += " " + src.example
		}
		if src.readme != "" {
			if !strings.Contains(snippet, src.readme) {
				t.Errorf("%s: README.md's snippet has no %s", src.section, src.readme)
			}
			snippet = strings.ReplaceAll(snippet, src.readme, src.replaced)
		}
		if !strings.Contains(goTokens(t, text), goTokens(t, []byte(snippet))) {
			t.Errorf("%s: README.md's snippet, comments aside, is not in %s:\n%s", src.section, where, snippet)
		}
	}
}

// functionBody returns the text between the braces of the function name
// in a Go file.
func functionBody(t *testing.T, filename string, text []byte, name string) []byte {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filename, text, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range f.Decls {
		if fn, ok := d.(*ast.FuncDecl); ok && fn.Name.Name == name {
			return text[fset.Position(fn.Body.Lbrace).Offset+1 : fset.Position(fn.Body.Rbrace).Offset]
		}
	}
	t.Fatalf("%s has no function %s", filename, name)
	return nil
}

// goTokens returns Go source as a string of its tokens, without comments
// or layout, one "\x00kind text\x01" each: a contiguous run of tokens is
// a substring.
func goTokens(t *testing.T, src []byte) string {
	t.Helper()
	fset := token.NewFileSet()
	var s scanner.Scanner
	s.Init(fset.AddFile("", -1, len(src)), src, func(pos token.Position, msg string) { t.Errorf("%v: %s", pos, msg) }, 0)
	var b strings.Builder
	for {
		_, tok, lit := s.Scan()
		if tok == token.EOF {
			return b.String()
		}
		if tok == token.SEMICOLON {
			lit = ";" // automatic ones are "\n"
		}
		b.WriteString("\x00" + tok.String() + " " + lit + "\x01")
	}
}
