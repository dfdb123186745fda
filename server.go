package wsrpc

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsrpc/wsrpc/internal/wsconn"
)

// serverReadBuffer is the size of each server connection's read buffer,
// which an idle connection keeps: small, since a busy connection reads
// ahead in bulk (wsconn.Conn.Read).
const serverReadBuffer = 256

// serverWriteBuffer is the size of each server connection's write buffer.
const serverWriteBuffer = 128

// Server is an http.Handler that accepts WebSocket connections and serves
// RPC on them: it answers the clients' calls with the methods of its [Mux]
// and lets its handlers and hooks call the clients back. Mount it on any
// router, for example http.ServeMux with "/ws" or "/ws/{client_id}".
//
// net/http's Server.Shutdown does not know about WebSocket connections:
// call the Server's own Shutdown alongside (http.Server.RegisterOnShutdown
// helps). Close or Shutdown also stops the goroutines the Server runs for
// all its connections (keep-alive, idle workers). A Server is safe for
// concurrent use.
type Server struct {
	cfg  *config       // the connections' options, defaulted
	opts ServerOptions // defaulted too: read the server's own fields here
	up   websocket.Upgrader

	mu       sync.Mutex
	conns    map[string]*Conn    // open connections, by ID
	byPath   map[pathKey][]*Conn // the same, by path wildcard and value
	active   int                 // ServeHTTP calls and connection goroutines
	idle     chan struct{}       // closed when active drops to 0 during shutdown
	shutdown bool
	open     int            // connections open or being upgraded
	perAddr  map[string]int // the same, by remote IP
	keeper   chan struct{}  // closed to stop the keep-alive goroutine
	kept     chan struct{}  // closed when it has stopped
}

// NewServer returns a Server that exposes mux's methods (nil: only the
// built-ins), configured by a copy of opts (nil: all defaults).
//
// If opts are invalid, NewServer returns an error that names every invalid
// field, and no Server. It returns the error rather than panicking because
// options are often built at run time, from flags or a configuration file,
// where a bad value is the user's mistake to report, not a bug; and [Dial]
// checks the [ConnOptions] both take the same way, with the same error.
func NewServer(mux *Mux, opts *ServerOptions) (*Server, error) {
	var o ServerOptions
	if opts != nil {
		o = *opts
	}
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	cfg := &config{ConnOptions: o.ConnOptions, mux: mux, workers: newWorkers(), hooks: new(hooks)}
	s := &Server{cfg: cfg, opts: o, conns: make(map[string]*Conn), byPath: make(map[pathKey][]*Conn), perAddr: make(map[string]int)}
	s.up = websocket.Upgrader{
		// A small read buffer: an idle connection keeps it for its whole
		// life, and payloads larger than it are read past it, straight
		// into the frame's buffer.
		HandshakeTimeout: max(o.HandshakeTimeout, 0),
		ReadBufferSize:   serverReadBuffer,
		// A small write buffer of its own per connection: most answers
		// fit, larger ones are written past it. (gorilla's buffer pool
		// would cost an allocation per message.)
		WriteBufferSize: serverWriteBuffer,
		Subprotocols:    []string{extProtocol},
		CheckOrigin:     s.checkOrigin,
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			s.cfg.Logger.Debug("upgrade refused", "remote", r.RemoteAddr, "status", status, "err", reason)
			http.Error(w, reason.Error(), status)
		},
	}
	return s, nil
}

// ServeHTTP upgrades the request to a WebSocket and serves it until the
// connection ends. Requests are refused with 503 once Shutdown began, with
// the Authenticate hook's status, and with 403 for a foreign Origin.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	addr := remoteIP(r.RemoteAddr)
	s.mu.Lock()
	refusal := ""
	switch {
	case s.shutdown:
		refusal = "server shutting down"
	case s.opts.MaxConns > 0 && s.open >= s.opts.MaxConns:
		refusal = "too many connections"
	case s.opts.MaxConnsPerAddr > 0 && s.perAddr[addr] >= s.opts.MaxConnsPerAddr:
		refusal = "too many connections from " + addr
	}
	if refusal != "" {
		s.mu.Unlock()
		s.cfg.Logger.Debug("connection refused", "remote", r.RemoteAddr, "status", http.StatusServiceUnavailable, "reason", refusal)
		http.Error(w, refusal, http.StatusServiceUnavailable)
		return
	}
	s.active++
	s.open++ // reserved now, released when the connection ends
	s.perAddr[addr]++
	s.mu.Unlock()
	defer s.leave()
	served := false
	defer func() {
		if !served {
			s.release(addr)
		}
	}()

	var identity any
	if s.opts.Authenticate != nil {
		var err error
		if identity, err = s.opts.Authenticate(r); err != nil {
			status, msg := http.StatusForbidden, http.StatusText(http.StatusForbidden)
			if he, ok := errors.AsType[*HTTPError](err); ok {
				status = he.StatusCode
				msg = he.Message
				if msg == "" {
					msg = http.StatusText(status)
				}
			}
			s.cfg.Logger.Debug("connection refused", "remote", r.RemoteAddr, "path", r.URL.Path, "status", status, "err", err)
			http.Error(w, msg, status)
			return
		}
	}
	// The upgrade response waits (Held) until the connection is in the
	// Server's indexes: once its client's Dial returns, Conn and
	// ConnsByPathValue find it, and so does cluster's routing from every
	// node. The connection's goroutine writes it (Conn.handshake).
	ws, err := s.up.Upgrade(&wsconn.Hijacker{ResponseWriter: w, Held: true}, r, nil)
	if err != nil {
		return // Upgrade answered the request
	}
	if s.cfg.MaxMessageSize > 0 {
		ws.SetReadLimit(s.cfg.MaxMessageSize)
	}
	c := newConn(ws, s.cfg, detach(r))
	c.identity = identity
	timeout := s.up.HandshakeTimeout
	if c.bc != nil {
		c.handshake = func() error { return c.bc.ReleaseWithin(timeout) }
	}
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		if c.bc != nil {
			_ = c.bc.ReleaseWithin(timeout) // the close frame follows it
		}
		ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down"), deadlineSoon())
		ws.Close()
		return
	}
	s.addLocked(c)
	s.active++ // the connection's goroutine
	served = true
	if s.keeper == nil && s.cfg.KeepAlive.Interval > 0 {
		s.keeper, s.kept = make(chan struct{}), make(chan struct{})
		go s.keepAlive(s.keeper, s.kept)
	}
	s.mu.Unlock()
	c.logger().Debug("connected", "path", r.URL.Path, "extensions", c.ext)
	// The connection gets a goroutine of its own, and ServeHTTP returns:
	// net/http then frees what it held for the request (its goroutine's
	// stack, the response and connection write buffers).
	go func() {
		defer s.leave()
		c.serve(nil)
		// Out of the indexes and its place given back at once: a client
		// that finds its old connection gone from Conns is not refused
		// for a place the old one still held.
		s.mu.Lock()
		s.removeLocked(c)
		s.releaseLocked(addr)
		s.mu.Unlock()
	}()
}

// release gives back a connection's place under MaxConns and
// MaxConnsPerAddr.
func (s *Server) release(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releaseLocked(addr)
}

// releaseLocked is release with s.mu held.
func (s *Server) releaseLocked(addr string) {
	s.open--
	if s.perAddr[addr]--; s.perAddr[addr] <= 0 {
		delete(s.perAddr, addr)
	}
}

// remoteIP returns the IP of a RemoteAddr, or all of it if it has no port.
func remoteIP(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

func (s *Server) leave() {
	s.mu.Lock()
	s.active--
	if s.active == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
	s.mu.Unlock()
}

// checkOrigin accepts requests without an Origin, same-host ones, and those
// whose Origin host matches OriginPatterns.
func (s *Server) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || s.opts.InsecureSkipOriginCheck {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	host := strings.ToLower(u.Host)
	if host == strings.ToLower(r.Host) {
		return true
	}
	for _, p := range s.opts.OriginPatterns {
		if ok, _ := path.Match(strings.ToLower(p), host); ok {
			return true
		}
	}
	s.cfg.Logger.Debug("connection refused: origin not allowed", "remote", r.RemoteAddr, "origin", origin)
	return false
}

// Conns returns the connections open now, to call or push to any of them.
func (s *Server) Conns() []*Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshot()
}

// Shutdown shuts the server down gracefully: it refuses new connections,
// answers new calls from clients with a "server shutting down" error
// (their callers' errors match [ErrShuttingDown]), lets the calls in
// flight finish, then closes every connection with status 1001
// (going away) and waits until they have ended: their readers, writers,
// handlers and hooks, OnDisconnect included. If ctx ends first, it closes
// what remains at once, waits at most CloseTimeout more for the handlers
// (their contexts canceled) and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.end(ctx, true, "server shutting down")
	return ctx.Err() // non-nil: calls were cut short
}

// Close closes every connection at once (status 1001) and refuses new ones.
// Calls in flight on either side fail; handlers' contexts are canceled.
// Close returns once the goroutines the Server runs have returned: each
// connection's reader and writer, the handlers and hooks, OnDisconnect
// included, and the keep-alive and idle workers. It waits for the close
// handshakes at most CloseTimeout, and as long again for handlers that
// ignore their context's end (or that call Close themselves); then it
// returns and they end on their own.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.end(ctx, false, "server closing")
	return nil
}

// end refuses new connections and closes the open ones (status 1001, with
// reason), all at once, each after its running calls finished (or ctx
// ended) if drain is set; then it stops the keep-alive and waits as wait
// does.
func (s *Server) end(ctx context.Context, drain bool, reason string) {
	s.mu.Lock()
	s.shutdown = true
	conns := s.snapshot()
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			if drain {
				c.drain(ctx)
			}
			c.close(websocket.CloseGoingAway, reason, ErrClosed)
		})
	}
	wg.Wait()
	s.stopKeepAlive()
	s.wait(ctx)
}

// wait waits until no ServeHTTP call or connection goroutine is left,
// until ctx ends and then at most CloseTimeout more, and stops the idle
// workers: it waits for them too when everything else has ended.
func (s *Server) wait(ctx context.Context) {
	if s.waitIdle(ctx) {
		s.cfg.workers.stopAndWait()
	} else {
		s.cfg.workers.stop()
	}
}

// waitIdle waits as wait does, and reports whether everything ended.
func (s *Server) waitIdle(ctx context.Context) bool {
	s.mu.Lock()
	if s.active == 0 {
		s.mu.Unlock()
		return true
	}
	if s.idle == nil {
		s.idle = make(chan struct{})
	}
	idle := s.idle
	s.mu.Unlock()
	select {
	case <-idle:
		return true
	case <-ctx.Done():
	}
	grace := s.cfg.CloseTimeout
	if grace <= 0 {
		return false
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-idle:
		return true
	case <-t.C:
		return false
	}
}

func (s *Server) snapshot() []*Conn {
	out := make([]*Conn, 0, len(s.conns))
	for _, c := range s.conns {
		out = append(out, c)
	}
	return out
}

func deadlineSoon() time.Time { return time.Now().Add(time.Second) }

// pathKey names a path wildcard's value, such as client_id=alice.
type pathKey struct{ name, value string }

// addLocked indexes an open connection; s.mu held.
func (s *Server) addLocked(c *Conn) {
	s.conns[c.id] = c
	pv := c.up.pathValues
	for i := 0; i+1 < len(pv); i += 2 {
		k := pathKey{pv[i], pv[i+1]}
		s.byPath[k] = append(s.byPath[k], c)
	}
}

// removeLocked drops a connection from the indexes; s.mu held.
func (s *Server) removeLocked(c *Conn) {
	delete(s.conns, c.id)
	pv := c.up.pathValues
	for i := 0; i+1 < len(pv); i += 2 {
		k := pathKey{pv[i], pv[i+1]}
		list := s.byPath[k]
		for j, x := range list {
			if x == c {
				list[j] = list[len(list)-1]
				list[len(list)-1] = nil
				list = list[:len(list)-1]
				break
			}
		}
		if len(list) == 0 {
			delete(s.byPath, k)
		} else {
			s.byPath[k] = list
		}
	}
}

// Conn returns the open connection whose [Conn.ID] is id, or nil.
func (s *Server) Conn(id string) *Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns[id]
}

// ConnsByPathValue returns the open connections whose upgrade request had
// the path wildcard name set to value: for a Server mounted on
// "/ws/{client_id}", ConnsByPathValue("client_id", "alice") finds alice's
// connections, however many the server has. It takes time in proportion to
// what it returns, not to the connections open. A connection is there
// before its upgrade response is written: by the time the client's Dial
// returns, this finds it.
func (s *Server) ConnsByPathValue(name, value string) []*Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Conn(nil), s.byPath[pathKey{name, value}]...)
}
