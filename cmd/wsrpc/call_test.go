package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/wsrpc/wsrpc"
)

func TestCall(t *testing.T) {
	t.Parallel()
	url := startDemo(t, "")
	tests := []struct {
		name string
		args []string
		want string // stdout
	}{
		{"add", []string{url, "add", "a=1", "b=2"}, "3.0\n"},
		{"float result", []string{url, "add", "a=0.5", "b=2"}, "2.5\n"},
		{"multiply", []string{url, "multiply", "a=6", "b=7"}, "42.0\n"},
		{"concat", []string{url, "concat", "a=hello", "b= world"}, "\"hello world\"\n"},
		{"built-in", []string{url, "_ping_"}, "\"pong\"\n"},
		{"object result", []string{url, "args", "o={ \"x\" : [1, 2] }"}, "{\"o\":{\"x\":[1,2]}}\n"},
		{"flags between arguments", []string{"--timeout", "20s", url, "add", "-v=false", "a=1", "--header", "K: v", "b=2"}, "3.0\n"},
		{"-- ends the flags", []string{url, "args", "--", "-v=1"}, "{\"-v\":1}\n"},
		{"URL without scheme", []string{strings.TrimPrefix(url, "ws://"), "add", "a=1", "b=2"}, "3.0\n"},
		{"http URL", []string{"http://" + strings.TrimPrefix(url, "ws://"), "add", "a=1", "b=2"}, "3.0\n"},
		{"client_id path", []string{url + "/alice", "concat", "a=x", "b=y"}, "\"xy\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runCmd(t, "", append([]string{"call"}, tt.args...)...)
			if r.code != exitOK || r.stdout != tt.want {
				t.Errorf("exit %d, stdout %q (stderr %q); want 0, %q", r.code, r.stdout, r.stderr, tt.want)
			}
		})
	}
}

// callJSON runs wsrpc call and decodes the JSON it prints.
func callJSON(t *testing.T, stdin string, args ...string) any {
	t.Helper()
	r := runCmd(t, stdin, append([]string{"call"}, args...)...)
	if r.code != exitOK {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	var v any
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("stdout %q: %v", r.stdout, err)
	}
	return v
}

// jsonValue decodes s.
func jsonValue(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestCallArgumentValues(t *testing.T) {
	t.Parallel()
	url := startDemo(t, "")
	got := callJSON(t, "", url, "args",
		"n=1", "f=-2.5", "s=hello", `q="1"`, "b=true", "z=null",
		`o={"x":[1]}`, "l=[1,\"a\"]", "e=", "eq=a=b", "sp=hello world", "t=tru")
	want := jsonValue(t, `{
		"n": 1, "f": -2.5, "s": "hello", "q": "1", "b": true, "z": null,
		"o": {"x": [1]}, "l": [1, "a"], "e": "", "eq": "a=b", "sp": "hello world", "t": "tru"
	}`)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the server got %v, want %v", got, want)
	}
}

func TestCallArgsMerge(t *testing.T) {
	t.Parallel()
	url := startDemo(t, "")
	want := jsonValue(t, `{"a": 1, "b": "two", "c": [3]}`)
	t.Run("flag", func(t *testing.T) {
		t.Parallel()
		got := callJSON(t, "", url, "args", "--args", `{"a": 1, "b": 2, "c": [3]}`, "b=two")
		if !reflect.DeepEqual(got, want) {
			t.Errorf("the server got %v, want %v", got, want)
		}
	})
	t.Run("stdin", func(t *testing.T) {
		t.Parallel()
		got := callJSON(t, `{"a": 1, "b": 2, "c": [3]}`+"\n", url, "args", "--args", "-", "b=two")
		if !reflect.DeepEqual(got, want) {
			t.Errorf("the server got %v, want %v", got, want)
		}
	})
	t.Run("typed method", func(t *testing.T) {
		t.Parallel()
		r := runCmd(t, "", "call", url, "add", "--args", `{"a": 1, "b": 2}`, "b=40")
		if r.code != exitOK || r.stdout != "41.0\n" {
			t.Errorf("exit %d, stdout %q (stderr %q); want 0, 41.0", r.code, r.stdout, r.stderr)
		}
	})
}

func TestCallRemoteError(t *testing.T) {
	t.Parallel()
	url := startDemo(t, "")
	tests := []struct {
		name string
		args []string
		want string // the first line on stderr
	}{
		{"unknown method", []string{url, "nope"}, "wsrpc: remote error -32601 (method not found): method not found: nope"},
		{"wrong type", []string{url, "add", "a=x", "b=1"}, "wsrpc: remote error -32602 (invalid params): "},
		{"missing argument", []string{url, "concat", "a=x"}, "wsrpc: remote error -32602 (invalid params): "},
		{"refused by the handler", []string{url, "register_wake_up_call", "time_delta=-1", "name=x"}, "wsrpc: remote error -32602 (invalid params): time_delta must be between"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runCmd(t, "", append([]string{"call"}, tt.args...)...)
			if r.code != exitRemote {
				t.Errorf("exit %d, want %d", r.code, exitRemote)
			}
			if !strings.HasPrefix(r.stderr, tt.want) {
				t.Errorf("stderr %q, want it to begin with %q", r.stderr, tt.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}
}

// TestCallServesCallbacks checks that the server can call the CLI's
// utility methods while the CLI's call is open.
func TestCallServesCallbacks(t *testing.T) {
	t.Parallel()
	url := startDemo(t, "")
	r := runCmd(t, "", "call", url, "ask_echo", "text=called back")
	if r.code != exitOK || r.stdout != "\"called back\"\n" {
		t.Errorf("exit %d, stdout %q (stderr %q); want 0, \"called back\"", r.code, r.stdout, r.stderr)
	}
}

func TestCallToken(t *testing.T) {
	t.Parallel()
	url := startDemo(t, "secret")
	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   string
		inStderr string
	}{
		{"no token", []string{url, "add", "a=1", "b=2"}, exitFail, "", "wsrpc: the server refused the connection: 403 Forbidden\n"},
		{"wrong token", []string{"--header", "X-Token: guess", url, "add", "a=1", "b=2"}, exitFail, "", "403 Forbidden"},
		{"token", []string{"--header", "X-Token: secret", url, "add", "a=1", "b=2"}, exitOK, "3.0\n", ""},
		{"header after arguments", []string{url, "add", "a=1", "b=2", "--header", "x-token:secret"}, exitOK, "3.0\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runCmd(t, "", append([]string{"call"}, tt.args...)...)
			if r.code != tt.code || r.stdout != tt.stdout || !strings.Contains(r.stderr, tt.inStderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q, stderr holding %q",
					r.code, r.stdout, r.stderr, tt.code, tt.stdout, tt.inStderr)
			}
		})
	}
}

// TestCallWebPage: a URL that answers with a web page (the demo page at
// /) is no WebSocket endpoint, and the CLI says so, as the library's
// error does, instead of calling the page a refusal.
func TestCallWebPage(t *testing.T) {
	t.Parallel()
	page := strings.TrimSuffix(startDemo(t, ""), "/ws") + "/"
	r := runCmd(t, "", "call", page, "add", "a=1", "b=2")
	want := "not a WebSocket endpoint: HTTP 200 OK, expected 101 Switching Protocols"
	if r.code != exitFail || r.stdout != "" || !strings.Contains(r.stderr, want) || strings.Contains(r.stderr, "refused") {
		t.Errorf("exit %d, stdout %q, stderr %q; want %d, nothing, and stderr holding %q", r.code, r.stdout, r.stderr, exitFail, want)
	}
}

func TestCallNoServer(t *testing.T) {
	t.Parallel()
	url := deadURL(t)
	r := runCmd(t, "", "call", url, "add", "a=1", "b=2")
	if r.code != exitFail || r.stdout != "" {
		t.Errorf("exit %d, stdout %q; want %d and nothing", r.code, r.stdout, exitFail)
	}
	if want := "wsrpc: connect " + url + ": "; !strings.HasPrefix(r.stderr, want) {
		t.Errorf("stderr %q, want it to begin with %q", r.stderr, want)
	}
}

// TestCallTimeout calls a server that accepts TCP connections but never
// answers the WebSocket upgrade.
func TestCallTimeout(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r := runCmd(t, "", "call", "--timeout", "100ms", "ws://"+ln.Addr().String()+"/ws", "add")
	if r.code != exitFail || r.stdout != "" {
		t.Errorf("exit %d, stdout %q; want %d and nothing", r.code, r.stdout, exitFail)
	}
	if want := "wsrpc: timed out after 100ms\nwsrpc: connect ws://" + ln.Addr().String() + "/ws: "; !strings.HasPrefix(r.stderr, want) {
		t.Errorf("stderr %q, want it to begin with %q", r.stderr, want)
	}
}

// stalledServer serves WebSocket upgrades on 127.0.0.1, reads the first
// message of each connection and sends it on the returned channel, and
// then neither reads nor writes until the test ends: it never answers a
// call, nor a close frame. It returns the ws:// URL.
func stalledServer(t *testing.T) (url string, first <-chan []byte) {
	t.Helper()
	got := make(chan []byte, 1)
	release := make(chan struct{})
	var (
		mu       sync.Mutex // orders handlers.Add before handlers.Wait
		ended    bool
		handlers sync.WaitGroup // httptest's Close ignores hijacked connections
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if ended {
			mu.Unlock()
			return
		}
		handlers.Add(1)
		mu.Unlock()
		defer handlers.Done()
		ws, err := new(websocket.Upgrader).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		if _, msg, err := ws.ReadMessage(); err == nil {
			select {
			case got <- msg:
			default:
			}
		}
		<-release
	}))
	t.Cleanup(func() {
		mu.Lock()
		ended = true
		mu.Unlock()
		close(release)
		handlers.Wait()
		srv.Close()
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http"), got
}

// TestCallTimeoutBoundsClose calls a server that takes the call and then
// stops reading: the call times out, and closing the connection must not
// add its wait for a close frame that never comes (2 s by default).
func TestCallTimeoutBoundsClose(t *testing.T) {
	t.Parallel()
	url, first := stalledServer(t)
	const timeout = time.Second
	arrived := make(chan time.Time, 1)
	go func() {
		select {
		case <-first: // the call reached the server
			arrived <- time.Now()
		case <-t.Context().Done():
		}
	}()
	r := runCmd(t, "", "call", "--timeout", timeout.String(), url, "echo", "text=x")
	returned := time.Now()
	if r.code != exitFail || r.stdout != "" {
		t.Errorf("exit %d, stdout %q; want %d and nothing", r.code, r.stdout, exitFail)
	}
	if want := "wsrpc: timed out after 1s\nwsrpc: call \"echo\": "; !strings.HasPrefix(r.stderr, want) {
		t.Errorf("stderr %q, want it to begin with %q", r.stderr, want)
	}
	// What matters is that closing does not wait on. Counted from the
	// call's arrival, so that connecting on a loaded machine does not
	// count: a close that waited would add all of DefaultCloseTimeout to
	// the timeout, which started before the arrival.
	select {
	case at := <-arrived:
		if took, limit := returned.Sub(at), timeout+wsrpc.DefaultCloseTimeout; took >= limit {
			t.Errorf("wsrpc call --timeout %v returned %v after its call reached the server, want less than %v: it waited for the close frame", timeout, took, limit)
		}
	case <-time.After(time.Minute): // against a hang: the call never reached the server
		t.Error("the call never reached the server")
	}
}

// TestCallInterrupted ends the command's context, as SIGINT does, while it
// connects and while its call is out: it says "interrupted", without the
// errors the client made of its context ending, and returns at once.
func TestCallInterrupted(t *testing.T) {
	t.Parallel()
	t.Run("connecting", func(t *testing.T) {
		t.Parallel()
		// A listener that never answers the upgrade.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				accepted <- c
			}
			close(accepted)
		}()
		go func() {
			if c, ok := <-accepted; ok {
				defer c.Close()
				cancel()
				<-ctx.Done()
			}
		}()
		checkInterrupted(t, runCmdContext(ctx, "", "call", "ws://"+ln.Addr().String()+"/ws", "add"))
	})
	t.Run("calling", func(t *testing.T) {
		t.Parallel()
		url, first := stalledServer(t)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		canceled := make(chan time.Time, 1)
		go func() {
			select {
			case <-first: // the call reached the server
				canceled <- time.Now()
				cancel()
			case <-ctx.Done():
			}
		}()
		r := runCmdContext(ctx, "", "call", url, "echo", "text=x")
		returned := time.Now()
		checkInterrupted(t, r)
		// Closing does not wait for the close frame the server never
		// sends: waiting would take all of DefaultCloseTimeout after the
		// interrupt.
		select {
		case at := <-canceled: // sent before the cancel that ended the call
			if took := returned.Sub(at); took >= wsrpc.DefaultCloseTimeout {
				t.Errorf("the interrupted call took %v to return: it waited for the close frame", took)
			}
		default: // not interrupted: checkInterrupted said so
		}
	})
}

func checkInterrupted(t *testing.T, r result) {
	t.Helper()
	if r.code != exitFail || r.stdout != "" || r.stderr != "wsrpc: interrupted\n" {
		t.Errorf("exit %d, stdout %q, stderr %q; want %d, nothing, %q",
			r.code, r.stdout, r.stderr, exitFail, "wsrpc: interrupted\n")
	}
}
