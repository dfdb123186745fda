package wsrpc

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
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
	hs := httptest.NewServer(hm)
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
		waitConnsDone(t, srv)
	})
	return srv, "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"
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

// waitConnsDone waits until the server has no connections left.
func waitConnsDone(t testing.TB, srv *Server) {
	deadline := time.Now().Add(10 * time.Second)
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("Dial(%s): %v", url, err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// serverConn waits for the server's only connection.
func serverConn(t testing.TB, srv *Server) *Conn {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
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
