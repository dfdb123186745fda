// Package wstest is an in-memory network for tests, imported only by
// tests: WebSocket servers and clients talk over pipes instead of
// sockets, through an unchanged net/http server, so that a test can run
// them under testing/synctest, where time is a fake clock that advances
// only when every goroutine waits, and real sockets are not allowed.
//
// [NewServer] serves any http.Handler (a wsrpc.Server, a plain gorilla
// Upgrader) with a real http.Server on a [Listener]; a client reaches it
// at ws://pipe/… by dialing through [Server.DialContext]:
//
//	ps := wstest.NewServer(handler)
//	defer ps.Close()
//	cl, err := wsrpc.Dial(ctx, ps.URL+"/ws", &wsrpc.DialOptions{
//		NetDialContext: ps.DialContext,
//		Proxy:          func(*http.Request) (*url.URL, error) { return nil, nil },
//	})
//
// (No proxy from the environment can reach the pipe: a dial to any host
// but [Host] fails with [ErrRefused].)
//
// Each connection is a [Pipe]: buffered both ways, with deadlines, and
// without a file descriptor, so that wsrpc's socket read-ahead never
// engages.
// [Conn.Freeze] stalls one link. Every wsrpc feature keeps a test over a
// real loopback socket too: wstest is for logic that depends on time
// (keep-alive, backoff, deadlines), not a replacement for TCP.
package wstest

import (
	"context"
	"net"
	"net/http"
	"sync"
)

// Server is an http.Server serving a handler on a [Listener]: the
// in-memory counterpart of net/http/httptest.Server.
type Server struct {
	// URL is the server's WebSocket URL, "ws://pipe", without a trailing
	// slash: add the path (ps.URL + "/ws").
	URL string
	// Listener is what the server accepts from. Closing it alone stops
	// new connections and keeps the open ones.
	Listener *Listener

	hs   *http.Server
	once sync.Once
	done chan struct{} // closed when Serve returned
}

// NewServer starts serving h on a new [Listener]. Create it inside the
// synctest bubble (if any) where it is used, and close it before the
// bubble ends.
func NewServer(h http.Handler) *Server {
	s := &Server{
		URL:      "ws://" + Host,
		Listener: NewListener(),
		hs:       &http.Server{Handler: h},
		done:     make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		s.hs.Serve(s.Listener)
	}()
	return s
}

// DialContext connects to the server; see [Listener.DialContext].
func (s *Server) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return s.Listener.DialContext(ctx, network, address)
}

// Close closes the listener and the connections the http.Server still
// serves, and waits until it stopped serving. As with httptest.Server,
// connections its handlers hijacked (every WebSocket) are theirs to
// close: close the wsrpc.Server first. Close is idempotent.
func (s *Server) Close() {
	s.once.Do(func() {
		s.hs.Close()
		<-s.done
	})
}
