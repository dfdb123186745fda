package testproxy

import (
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"
)

// ConnectProxy is an HTTP proxy on 127.0.0.1 that serves CONNECT requests
// (tunnels) only, as clients use for ws:// and wss:// through a proxy. It
// records the targets it was asked for. With [ConnectProxy.Rewrite] a test
// can name a host only the proxy resolves; any other target must be a
// loopback address.
type ConnectProxy struct {
	t   testing.TB
	ln  net.Listener
	srv *http.Server
	wg  sync.WaitGroup // Serve and the tunnels

	mu       sync.Mutex
	requests []string
	rewrite  map[string]string
	tunnels  map[net.Conn]struct{}
	closed   bool
}

// NewConnectProxy starts a CONNECT proxy listening on 127.0.0.1:0. It
// closes, tunnels included, when the test ends.
func NewConnectProxy(t testing.TB) *ConnectProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testproxy: %v", err)
	}
	p := &ConnectProxy{
		t:       t,
		ln:      ln,
		rewrite: make(map[string]string),
		tunnels: make(map[net.Conn]struct{}),
	}
	p.srv = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: dialTimeout,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	p.wg.Go(func() { p.srv.Serve(ln) })
	t.Cleanup(p.Close)
	return p
}

// URL returns the proxy's URL, http://127.0.0.1:port, for
// http.ProxyURL or the HTTP_PROXY variable.
func (p *ConnectProxy) URL() *url.URL {
	return &url.URL{Scheme: "http", Host: p.ln.Addr().String()}
}

// Rewrite makes the proxy connect to the loopback address to (host:port)
// when asked for from (host:port), such as "wsrpc.test:1234".
func (p *ConnectProxy) Rewrite(from, to string) {
	p.t.Helper()
	if !isLoopback(to) {
		p.t.Fatalf("testproxy: rewrite target %q is not a loopback address", to)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rewrite[from] = to
}

// Requests returns the targets of the CONNECT requests seen so far, as
// the client named them (before any rewrite), in order.
func (p *ConnectProxy) Requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.requests...)
}

// ServeHTTP serves one proxy request: it answers a CONNECT with "200
// Connection established" and then copies bytes both ways until either
// side closes.
func (p *ConnectProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "testproxy: only CONNECT is supported", http.StatusMethodNotAllowed)
		return
	}
	p.mu.Lock()
	p.requests = append(p.requests, r.Host)
	target, ok := p.rewrite[r.Host]
	p.mu.Unlock()
	if !ok {
		target = r.Host
	}
	if !isLoopback(target) {
		http.Error(w, "testproxy: unknown or non-loopback host "+r.Host, http.StatusBadGateway)
		return
	}
	dst, err := net.DialTimeout("tcp", target, dialTimeout)
	if err != nil {
		http.Error(w, "testproxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	src, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		dst.Close()
		http.Error(w, "testproxy: "+err.Error(), http.StatusInternalServerError)
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		src.Close()
		dst.Close()
		return
	}
	p.tunnels[src] = struct{}{}
	p.tunnels[dst] = struct{}{}
	p.wg.Add(1) // Close, which Waits, has not begun
	p.mu.Unlock()
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.tunnels, src)
		delete(p.tunnels, dst)
		p.mu.Unlock()
	}()
	src.SetDeadline(time.Time{})
	if _, err := io.WriteString(src, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		src.Close()
		dst.Close()
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(dst, brw.Reader) // bytes already buffered, then the socket
		dst.Close()
		src.Close()
	}()
	io.Copy(src, dst)
	src.Close()
	dst.Close()
	<-done
}

// Close stops the proxy and its tunnels and waits for their goroutines.
// It is idempotent.
func (p *ConnectProxy) Close() {
	p.mu.Lock()
	p.closed = true
	var conns []net.Conn
	for c := range p.tunnels {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	p.srv.Close()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
}
