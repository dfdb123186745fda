package wsrpc

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsrpc/wsrpc/internal/wstest"
)

// quiet is a logger for tests: set WSRPC_TEST_LOG=1 to see the logs.
func quiet() *slog.Logger {
	if testing.Verbose() && envOn("WSRPC_TEST_LOG") {
		return slog.Default()
	}
	return slog.New(slog.DiscardHandler)
}

func envOn(k string) bool { return os.Getenv(k) == "1" }

// testServer runs srv on a loopback httptest server, mounted at /ws and
// /ws/{client_id}; it returns the ws:// URL of /ws. Everything is closed
// when the test ends.
func testServer(t testing.TB, mux *Mux, opts *ServerOptions) (*Server, string) {
	t.Helper()
	srv, hm := wsHandler(t, mux, opts)
	hs := httptest.NewServer(hm)
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
		waitConnsDone(t, srv)
	})
	return srv, "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"
}

// wsHandler returns a Server with mux and opts (a quiet logger unless set)
// and an http.ServeMux that mounts it at /ws and /ws/{client_id}.
func wsHandler(t testing.TB, mux *Mux, opts *ServerOptions) (*Server, *http.ServeMux) {
	t.Helper()
	if opts == nil {
		opts = &ServerOptions{}
	}
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	srv := mustServer(t, mux, opts)
	hm := http.NewServeMux()
	hm.Handle("/ws", srv)
	hm.Handle("/ws/{client_id}", srv)
	return srv, hm
}

// mustServer returns NewServer(mux, opts), and fails the test if opts are
// invalid.
func mustServer(t testing.TB, mux *Mux, opts *ServerOptions) *Server {
	t.Helper()
	srv, err := NewServer(mux, opts)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// waitConnsDone waits until the server has no connections left. The
// minute is a bound against a hang, not a timing assertion.
func waitConnsDone(t testing.TB, srv *Server) {
	deadline := time.Now().Add(time.Minute)
	for len(srv.Conns()) > 0 {
		if time.Now().After(deadline) {
			t.Errorf("server still has %d connections", len(srv.Conns()))
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testDial dials url with opts (a quiet logger unless set) and closes the
// client when the test ends.
func testDial(t testing.TB, url string, opts *DialOptions) *Client {
	t.Helper()
	if opts == nil {
		opts = &DialOptions{}
	}
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // against a hang
	defer cancel()
	cl, err := Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("Dial(%s): %v", url, err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// serverConn waits for the server's only connection (a minute at most,
// against a hang).
func serverConn(t testing.TB, srv *Server) *Conn {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if cs := srv.Conns(); len(cs) == 1 {
			return cs[0]
		} else if len(cs) > 1 {
			t.Fatalf("server has %d connections, want 1", len(cs))
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection on the server")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// ctxT returns a context that ends with the test or after 20 s.
func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// The helpers below are for tests under testing/synctest, which run in a
// bubble with a fake clock: their servers and clients talk over the
// in-memory pipes of internal/wstest (a goroutine blocked on a loopback
// socket never lets the fake clock advance). Call them inside the bubble.

// pipeServer serves a Server with mux and opts (a quiet logger unless set)
// on an in-memory http.Server, at /ws and /ws/{client_id}. Both close when
// the test ends.
func pipeServer(t *testing.T, mux *Mux, opts *ServerOptions) (*Server, *wstest.Server) {
	t.Helper()
	srv, hm := wsHandler(t, mux, opts)
	ps := wstest.NewServer(hm)
	t.Cleanup(func() {
		srv.Close() // first: the WebSockets are hijacked, ps.Close leaves them
		ps.Close()
	})
	return srv, ps
}

// pipeDial dials ps's /ws with opts (a quiet logger unless set), through
// ps unless opts has a NetDialContext, and closes the client when the test
// ends.
func pipeDial(t *testing.T, ps *wstest.Server, opts *DialOptions) *Client {
	t.Helper()
	if opts == nil {
		opts = &DialOptions{}
	}
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	if opts.NetDialContext == nil {
		opts.NetDialContext = ps.DialContext
	}
	opts.Proxy = noProxy
	cl, err := Dial(t.Context(), ps.URL+"/ws", opts)
	if err != nil {
		t.Fatalf("Dial(%s): %v", ps.URL+"/ws", err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// noProxy is the Proxy for in-memory servers, which a proxy from the
// environment could not reach.
func noProxy(*http.Request) (*url.URL, error) { return nil, nil }

// rawPipeDial connects a plain gorilla client to ps: a peer that does only
// what its test makes it do (it answers pings only while the test reads).
// It is closed when the test ends.
func rawPipeDial(t *testing.T, ps *wstest.Server) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{NetDialContext: ps.DialContext}
	ws, _, err := d.DialContext(t.Context(), ps.URL+"/ws", nil)
	if err != nil {
		t.Fatalf("dial %s: %v", ps.URL+"/ws", err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

// rawPipeServer serves every connection with handle, as a plain gorilla
// server: a peer that does only what its test makes it do. The connection
// closes when handle returns; handle must return by the end of the test
// (when t.Context ends, at the latest). The server closes then.
func rawPipeServer(t *testing.T, handle func(ws *websocket.Conn)) *wstest.Server {
	t.Helper()
	ps := wstest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		handle(ws)
	}))
	t.Cleanup(ps.Close)
	return ps
}

// await returns the next value on ch, failing the test if none comes
// within d on the bubble's clock: without a bound, a bug that leaves a
// ticker running would advance the fake clock forever instead of
// deadlocking the bubble.
func await[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("no %s within %v", what, d)
		panic("unreachable")
	}
}

// flakyNet is a NetDialContext to an in-memory server that refuses while
// the server is down (or always, without a server), and records when each
// dial came and the links it made.
type flakyNet struct {
	ps    *wstest.Server // nil: always down
	start time.Time

	mu    sync.Mutex
	down  bool
	tries []time.Duration // when each dial came, since start
	links []*wstest.Conn  // the client's end of each link made
}

func newFlakyNet(ps *wstest.Server) *flakyNet { return &flakyNet{ps: ps, start: time.Now()} }

func (n *flakyNet) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	n.mu.Lock()
	n.tries = append(n.tries, time.Since(n.start))
	down := n.down || n.ps == nil
	n.mu.Unlock()
	if down {
		return nil, &net.OpError{Op: "dial", Net: network, Err: wstest.ErrRefused}
	}
	c, err := n.ps.DialContext(ctx, network, addr)
	if err == nil {
		n.mu.Lock()
		n.links = append(n.links, c.(*wstest.Conn))
		n.mu.Unlock()
	}
	return c, err
}

// setDown takes the server down (dials are refused) or brings it back.
func (n *flakyNet) setDown(down bool) {
	n.mu.Lock()
	n.down = down
	n.mu.Unlock()
}

// dials returns when each dial came, since start.
func (n *flakyNet) dials() []time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.tries)
}

// lastLink returns the client's end of the last link made.
func (n *flakyNet) lastLink() *wstest.Conn {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.links[len(n.links)-1]
}

// hold is a handler that runs until release is closed or its connection
// ends; each run is sent on started first.
func hold(started chan<- struct{}, release <-chan struct{}) func(context.Context, struct{}) (bool, error) {
	return func(ctx context.Context, _ struct{}) (bool, error) {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return true, nil
	}
}
