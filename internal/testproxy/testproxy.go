// Package testproxy provides loopback proxies for network tests: a TCP
// proxy that can stall or cut the connections through it, and an HTTP
// CONNECT proxy. Both listen on 127.0.0.1 and only ever connect to loopback
// addresses. Each owns its goroutines and waits for them in Close, which
// runs when the test ends.
package testproxy

import (
	"net"
	"sync"
	"testing"
	"time"
)

// dialTimeout bounds each dial to a target.
const dialTimeout = 5 * time.Second

// Proxy is a TCP proxy on 127.0.0.1 that forwards every connection it
// accepts to one target. A test can freeze it, which stalls every link
// without closing anything, and cut all links abruptly.
type Proxy struct {
	target string
	ln     net.Listener
	wg     sync.WaitGroup // the accept loop and the pipes

	mu       sync.Mutex
	flowing  chan struct{} // closed while forwarding, open while frozen
	links    map[*link]struct{}
	accepted int
	closed   bool
}

// link is one proxied connection: the accepted one and the one to the
// target.
type link struct {
	p              *Proxy
	client, server net.Conn
	once           sync.Once
	cut            chan struct{} // closed when the link ends
}

// New starts a proxy to target, a loopback host:port, listening on
// 127.0.0.1:0. It closes when the test ends.
func New(t testing.TB, target string) *Proxy {
	t.Helper()
	if !isLoopback(target) {
		t.Fatalf("testproxy: target %q is not a loopback address", target)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testproxy: %v", err)
	}
	p := &Proxy{
		target:  target,
		ln:      ln,
		flowing: make(chan struct{}),
		links:   make(map[*link]struct{}),
	}
	close(p.flowing)
	p.wg.Go(p.acceptLoop)
	t.Cleanup(p.Close)
	return p
}

// Addr returns the proxy's address, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Accepted returns how many connections the proxy has accepted so far.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Freeze stops forwarding in both directions, on current and new links,
// without closing anything: bytes that arrive are held, and no FIN or RST
// is passed on, as on a link that silently drops everything. New
// connections are still accepted, and stall too.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.flowing:
		p.flowing = make(chan struct{})
	default: // already frozen
	}
}

// Thaw resumes forwarding after Freeze; held bytes are delivered.
func (p *Proxy) Thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.flowing:
	default:
		close(p.flowing)
	}
}

// CutAll closes every current connection abruptly: both of its sockets
// are reset (RST). The proxy keeps accepting new ones.
func (p *Proxy) CutAll() {
	for _, l := range p.snapshot() {
		l.end(true)
	}
}

// Close stops the proxy: it stops accepting, cuts every connection and
// waits for its goroutines. It is idempotent.
func (p *Proxy) Close() {
	p.mu.Lock()
	first := !p.closed
	p.closed = true
	p.mu.Unlock()
	if first {
		p.ln.Close()
	}
	p.CutAll()
	p.wg.Wait()
}

func (p *Proxy) snapshot() []*link {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*link, 0, len(p.links))
	for l := range p.links {
		out = append(out, l)
	}
	return out
}

// acceptLoop accepts connections until the listener closes. It dials the
// target for each; a target that refuses gets its client reset.
func (p *Proxy) acceptLoop() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.accepted++
		closed := p.closed
		p.mu.Unlock()
		if closed {
			reset(c)
			continue
		}
		s, err := net.DialTimeout("tcp", p.target, dialTimeout)
		if err != nil {
			reset(c)
			continue
		}
		l := &link{p: p, client: c, server: s, cut: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			reset(c)
			reset(s)
			continue
		}
		p.links[l] = struct{}{}
		// The accept loop holds a count of wg, so these Adds may race
		// with Close's Wait.
		p.wg.Add(2)
		p.mu.Unlock()
		go l.pipe(l.server, l.client)
		go l.pipe(l.client, l.server)
	}
}

// pipe copies src to dst while the proxy is not frozen. Any end of either
// direction ends the whole link.
func (l *link) pipe(dst, src net.Conn) {
	defer l.p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		if !l.gate() {
			return
		}
		n, err := src.Read(buf)
		if !l.gate() { // hold what was read, and any EOF, while frozen
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				l.end(false)
				return
			}
		}
		if err != nil {
			l.end(false)
			return
		}
	}
}

// gate waits while the proxy is frozen; it reports false if the link
// ended meanwhile.
func (l *link) gate() bool {
	l.p.mu.Lock()
	flowing := l.p.flowing
	l.p.mu.Unlock()
	select {
	case <-flowing:
		return true
	case <-l.cut:
		return false
	}
}

// end closes both sockets once: abruptly (RST) if abort, else with FIN.
func (l *link) end(abort bool) {
	l.once.Do(func() {
		close(l.cut)
		if abort {
			reset(l.client)
			reset(l.server)
		} else {
			l.client.Close()
			l.server.Close()
		}
		l.p.mu.Lock()
		delete(l.p.links, l)
		l.p.mu.Unlock()
	})
}

// reset closes c so that the peer gets an RST rather than a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// isLoopback reports whether hostport names a loopback IP address.
func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
