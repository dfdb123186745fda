package main

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsrpc/wsrpc"
)

// waitFor polls cond until it holds or the test's bound passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s", what)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestIdle opens 50 idle clients, checks that the server has them, and
// stops the command as SIGINT does: every connection closes.
func TestIdle(t *testing.T) {
	t.Parallel()
	var opened, closed atomic.Int32
	url, srv := startServer(t, wsrpc.NewMux(), &wsrpc.ServerOptions{
		ConnOptions: wsrpc.ConnOptions{
			OnConnect: func(context.Context, *wsrpc.Conn) error {
				opened.Add(1)
				return nil
			},
			OnDisconnect: func(*wsrpc.Conn, error) { closed.Add(1) },
		},
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout := newFirstLine()
	var stderr bytes.Buffer // written until run returns
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"idle", url, "-n", "50", "--from", "127.0.0.1", "--keepalive", "1s"}, nil, stdout, &stderr)
	}()
	select {
	case line := <-stdout.line:
		if line != "connected 50" {
			t.Fatalf("first line %q, want %q", line, "connected 50")
		}
	case c := <-code:
		t.Fatalf("idle exited with %d: %s", c, stderr.String())
	}
	waitFor(t, "50 connections on the server", func() bool { return len(srv.Conns()) == 50 })
	for _, c := range srv.Conns() {
		if !strings.HasPrefix(c.RemoteAddr().String(), "127.0.0.1:") {
			t.Errorf("connection from %v", c.RemoteAddr())
		}
	}

	cancel() // as SIGINT does
	if c := <-code; c != exitOK {
		t.Errorf("idle exited with %d, want 0; stderr:\n%s", c, stderr.String())
	}
	if !strings.Contains(stderr.String(), "closed 50 clients") || strings.Contains(stderr.String(), "lost") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
	waitFor(t, "the server to see every connection closed", func() bool { return closed.Load() == 50 })
	if n := opened.Load(); n != 50 {
		t.Errorf("the server saw %d connections, want 50", n)
	}
	// A connection leaves the server's indexes after its OnDisconnect.
	waitFor(t, "the server to drop every connection from its indexes", func() bool { return len(srv.Conns()) == 0 })
}

func TestIdleConnectFailure(t *testing.T) {
	t.Parallel()
	url := startDemo(t, "secret")
	r := runCmd(t, "", "idle", url, "-n", "20")
	if r.code != exitFail || !strings.Contains(r.stderr, "403") || r.stdout != "" {
		t.Errorf("exit %d, stdout %q, stderr %q; want %d and 403", r.code, r.stdout, r.stderr, exitFail)
	}
}

// TestIdleInterrupted stops the command before it could connect.
func TestIdleInterrupted(t *testing.T) {
	t.Parallel()
	url := startDemo(t, "")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"idle", url, "-n", "5"}, nil, &out, &errOut); code != exitFail || out.Len() != 0 {
		t.Errorf("exit %d, stdout %q, stderr %q; want %d", code, out.String(), errOut.String(), exitFail)
	}
}

func TestIdleUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{}, "want one URL"},
		{[]string{"ws://10.1.2.3:9000/ws"}, "want a loopback IP address"},
		{[]string{"ws://localhost:9000/ws"}, "want a loopback IP address"},
		{[]string{"ws://example.com/ws"}, "want a loopback IP address"},
		{[]string{"ws://[::2]:9000/ws"}, "want a loopback IP address"},
		{[]string{"ws://127.0.0.1:9000/ws", "--from", "10.1.2.3"}, "--from"},
		{[]string{"ws://127.0.0.1:9000/ws", "--from", "::ffff:10.1.2.3"}, "--from"},
		{[]string{"ws://127.0.0.1:9000/ws", "--from", "nope"}, "--from"},
		{[]string{"ws://127.0.0.1:9000/ws", "--from", "::1"}, "different address families"},
		{[]string{"ws://127.0.0.1:9000/ws", "-n", "0"}, "-n must be between"},
		{[]string{"ws://127.0.0.1:9000/ws", "-n", "1000000"}, "-n must be between"},
		{[]string{"ws://127.0.0.1:9000/ws", "--keepalive", "x"}, `invalid --keepalive "x": want a duration`},
	}
	for _, tt := range tests {
		r := runCmd(t, "", append([]string{"idle"}, tt.args...)...)
		if r.code != exitFail || !strings.Contains(r.stderr, tt.want) || r.stdout != "" {
			t.Errorf("idle %q: exit %d, stderr %q; want %d and %q", tt.args, r.code, r.stderr, exitFail, tt.want)
		}
	}
}

func TestLoopbackDialer(t *testing.T) {
	t.Parallel()
	for _, ok := range [][2]string{
		{"ws://127.0.0.1:1/ws", ""},
		{"ws://127.0.0.1:1/ws", "127.0.0.2"},
		{"ws://127.255.0.1:1/ws", "127.0.0.1"},
		{"ws://[::1]:1/ws", "::1"},
		{"ws://[::ffff:127.0.0.1]:1/ws", "127.0.0.3"},
	} {
		if _, err := loopbackDialer(ok[0], ok[1]); err != nil {
			t.Errorf("%q from %q: %v", ok[0], ok[1], err)
		}
	}
}
