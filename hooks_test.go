package wsrpc

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// TestRegisteredHooks: hooks registered by several layers run on every
// connection, after the options' hook, in the order they were registered,
// on the server and on a client (its reconnects included), connect and
// disconnect hooks alike; the first error closes the connection and skips
// the hooks after it.
func TestRegisteredHooks(t *testing.T) {
	ctx := ctxT(t)
	var mu sync.Mutex
	var log []string
	note := func(s string) { mu.Lock(); log = append(log, s); mu.Unlock() }
	taken := func() []string { mu.Lock(); defer mu.Unlock(); l := log; log = nil; return l }

	srv, u := testServer(t, utilMux(), &ServerOptions{
		ConnOptions: ConnOptions{
			OnConnect:    func(context.Context, *Conn) error { note("server option"); return nil },
			OnDisconnect: func(*Conn, error) { note("server option down") },
		},
	})
	srv.RegisterOnConnect(func(context.Context, *Conn) error { note("server layer 1"); return nil })
	srv.RegisterOnConnect(func(context.Context, *Conn) error { note("server layer 2"); return nil })
	srv.RegisterOnDisconnect(func(*Conn, error) { note("server layer down") })

	cl := testDial(t, u, &DialOptions{ConnOptions: ConnOptions{
		OnConnect:    func(context.Context, *Conn) error { note("client option"); return nil },
		OnDisconnect: func(*Conn, error) { note("client option down") },
	}})
	cl.RegisterOnConnect(func(context.Context, *Conn) error { note("client layer"); return nil })
	cl.RegisterOnDisconnect(func(*Conn, error) { note("client layer down") })
	mustEcho(ctx, t, cl, "up")
	got := taken()
	for _, want := range [][]string{{"server option", "server layer 1", "server layer 2"}, {"client option"}} {
		if !isSubsequence(got, want) {
			t.Errorf("hooks ran %v, want %v in that order", got, want)
		}
	}
	if slices.Contains(got, "client layer") {
		t.Errorf("a hook registered after Dial ran for the connection Dial made: %v", got)
	}

	// A reconnect runs the client's registered hook too.
	first := cl.Conn()
	old := serverConn(t, srv)
	old.Close()
	pollUntil(t, "the client to reconnect", func() bool { c := cl.Conn(); return c != nil && c != first })
	mustEcho(ctx, t, cl, "again")
	pollUntil(t, "the reconnect's hooks", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(log, "client layer") && slices.Contains(log, "server layer 2")
	})
	// Close returns once the read loop stopped; the disconnect hooks run
	// after that, and may not have run when the client is back.
	recv(ctx, t, old.Done(), "the old connection's disconnect hooks")
	recv(ctx, t, first.Done(), "the client's old connection's disconnect hooks")
	got = taken()
	if !isSubsequence(got, []string{"server option down", "server layer down"}) {
		t.Errorf("disconnect hooks ran %v, want the option's, then the layer's", got)
	}
	// A disconnect hook registered after Dial runs when the connection
	// Dial made ends (hooks are read when they run).
	if !isSubsequence(got, []string{"client option down", "client layer down"}) {
		t.Errorf("client disconnect hooks ran %v, want the option's, then the layer's", got)
	}
	if !isSubsequence(got, []string{"client option", "client layer"}) {
		t.Errorf("client hooks on the reconnect ran %v", got)
	}
}

// TestRegisteredHookError: a registered hook's error closes the
// connection, and the hooks after it do not run.
func TestRegisteredHookError(t *testing.T) {
	ctx := ctxT(t)
	ran := make(chan string, 4)
	srv, u := testServer(t, utilMux(), nil)
	srv.RegisterOnConnect(func(context.Context, *Conn) error { ran <- "refuser"; return errors.New("not today") })
	srv.RegisterOnConnect(func(context.Context, *Conn) error { ran <- "after"; return nil })
	lost := make(chan error, 1)
	testDial(t, u, &DialOptions{DisableReconnect: true, ConnOptions: ConnOptions{OnDisconnect: func(_ *Conn, err error) { sendNoWait(lost, err) }}})
	err := recv(ctx, t, lost, "the connection to be closed")
	if !strings.Contains(err.Error(), "1011") {
		t.Errorf("closed with %v, want status 1011", err)
	}
	if got := recv(ctx, t, ran, "the first hook"); got != "refuser" {
		t.Errorf("first hook: %s", got)
	}
	select {
	case got := <-ran:
		t.Errorf("hook %q ran after an error", got)
	default:
	}
}

func isSubsequence(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// TestServerLookup: a server finds an open connection by its id and by a
// path wildcard's value, and forgets it when it ends.
func TestServerLookup(t *testing.T) {
	ctx := ctxT(t)
	srv, u := testServer(t, utilMux(), nil)
	base := strings.TrimSuffix(u, "/ws")
	alice1 := testDial(t, base+"/ws/alice", nil)
	alice2 := testDial(t, base+"/ws/alice", nil)
	bob := testDial(t, base+"/ws/bob", nil)
	// A connection is listed before its first call is served (Dial may
	// return a little earlier).
	mustEcho(ctx, t, alice1, "listed")
	mustEcho(ctx, t, alice2, "listed")

	id, err := Call[string](ctx, bob, "_get_channel_id_", nil) // the server side's id
	if err != nil {
		t.Fatal(err)
	}
	c := srv.Conn(id)
	if c == nil || c.PathValue("client_id") != "bob" {
		t.Fatalf("Conn(%q) = %v, want bob's connection", id, c)
	}
	if srv.Conn("no such id") != nil {
		t.Error("Conn found a connection for an unknown id")
	}
	if got := srv.ConnsByPathValue("client_id", "alice"); len(got) != 2 {
		t.Errorf("alice has %d connections, want 2", len(got))
	}
	if got := srv.ConnsByPathValue("client_id", "bob"); len(got) != 1 || got[0] != c {
		t.Errorf("bob's connections: %v, want [%v]", got, c)
	}
	if got := srv.ConnsByPathValue("client_id", "carol"); len(got) != 0 {
		t.Errorf("carol has %d connections, want none", len(got))
	}
	alice1.Close()
	bob.Close()
	pollUntil(t, "the closed connections to go", func() bool {
		return len(srv.ConnsByPathValue("client_id", "alice")) == 1 && srv.Conn(id) == nil
	})
	if got := srv.ConnsByPathValue("client_id", "bob"); len(got) != 0 {
		t.Errorf("bob still has %d connections", len(got))
	}
	mustEcho(ctx, t, alice2, "still here")
}

// TestReconnectReadyAfterHooks: a reconnect's connection becomes the
// client's only once its OnConnect hooks returned: while they run,
// Client.Conn is nil, calls fail with ErrNotConnected or (WaitForReady)
// wait, and a waiting call reaches the server after what the hooks sent.
func TestReconnectReadyAfterHooks(t *testing.T) {
	ctx := ctxT(t)
	var mu sync.Mutex
	var arrived []string
	mux := utilMux()
	Register(mux, "mark", func(_ context.Context, a struct{ Who string }) (bool, error) {
		mu.Lock()
		arrived = append(arrived, a.Who)
		mu.Unlock()
		return true, nil
	})
	srv, u := testServer(t, mux, nil)

	var clp atomic.Pointer[Client]
	var connects atomic.Int32
	hookRuns, release := make(chan *Conn, 1), make(chan struct{})
	hookErr := make(chan error, 1)
	cl := testDial(t, u, &DialOptions{Retry: fastRetry, WaitForReady: true})
	clp.Store(cl)
	cl.RegisterOnConnect(func(ctx context.Context, c *Conn) error {
		if connects.Add(1) != 1 {
			return nil
		}
		hookRuns <- c
		<-release
		if got := clp.Load().Conn(); got != nil {
			hookErr <- errors.New("Client.Conn is set while the hooks run")
		}
		_, err := Call[bool](ctx, c, "mark", map[string]string{"who": "hook"})
		hookErr <- err
		return err
	})

	serverConn(t, srv).Close()
	c := recv(ctx, t, hookRuns, "the reconnect's hook")
	if got := cl.Conn(); got != nil {
		t.Errorf("Client.Conn() = %p while the hooks run, want nil", got)
	}
	waited := make(chan error, 1)
	go func() {
		_, err := Call[bool](ctx, cl, "mark", map[string]string{"who": "app"})
		waited <- err
	}()
	close(release)
	if err := recv(ctx, t, hookErr, "the hook's call"); err != nil {
		t.Fatal(err)
	}
	if err := recv(ctx, t, waited, "the application's call"); err != nil {
		t.Fatal(err)
	}
	if cl.Conn() != c {
		t.Error("the reconnect's connection is not the client's once its hooks returned")
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(arrived, []string{"hook", "app"}) {
		t.Errorf("the server saw %v, want the hook's call before the application's", arrived)
	}
}
