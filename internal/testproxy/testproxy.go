// Package testproxy provides loopback proxies for network tests: a TCP
// proxy that can stall, cut, delay and fragment the connections through
// it, by hand or on a seeded schedule of faults, and an HTTP CONNECT
// proxy. Both listen on 127.0.0.1 and only ever connect to loopback
// addresses. Each owns its goroutines and waits for them in Close, which
// runs when the test ends.
package testproxy

import (
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// dialTimeout bounds each dial to a target.
const dialTimeout = 5 * time.Second

// Proxy is a TCP proxy on 127.0.0.1 that forwards every connection it
// accepts to one target. A test can freeze it, which stalls every link
// without closing anything, cut all links abruptly, silence the current
// links for good ([Proxy.HalfOpen]), and delay and fragment what it
// forwards ([Proxy.Shape]); [Proxy.Inject] does all of these on a schedule.
type Proxy struct {
	target string
	ln     net.Listener
	wg     sync.WaitGroup // the accept loop, the pipes and an injector
	done   chan struct{}  // closed by Close

	mu       sync.Mutex
	flowing  chan struct{} // closed while forwarding, open while frozen
	links    map[*link]struct{}
	shaping  [2]Shaping // by Direction
	accepted int
	closed   bool
}

// link is one proxied connection: the accepted one and the one to the
// target.
type link struct {
	p              *Proxy
	n              int // the link's number, from 1: seeds its fragmentation
	client, server net.Conn
	silent         bool // guarded by p.mu: forwards nothing until it ends
	once           sync.Once
	cut            chan struct{} // closed when the link ends
}

// Direction is one direction of the bytes a proxy forwards.
type Direction int

const (
	// ToTarget is from the client that connected to the proxy to the
	// target.
	ToTarget Direction = iota
	// ToClient is from the target back to the client.
	ToClient
)

func (d Direction) String() string {
	if d == ToClient {
		return "to client"
	}
	return "to target"
}

// Shaping slows down and fragments what a proxy forwards in one direction.
// The zero Shaping forwards each read at once, whole.
type Shaping struct {
	// Delay holds the bytes of each read this long, plus up to Jitter more
	// at random, before they are written on. The direction reads nothing
	// meanwhile, so a delay also caps its throughput, as on a slow link.
	Delay, Jitter time.Duration
	// Chunk, if positive, writes the bytes of each read in pieces of 1 to
	// Chunk bytes (at random), each a write of its own, with a pause of up
	// to Gap (at random) between pieces: the peer reads messages in
	// fragments. A freeze or a half-open link may stop a read between two
	// pieces.
	Chunk int
	Gap   time.Duration
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
		done:    make(chan struct{}),
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
func (p *Proxy) CutAll() { p.cutAll() }

// cutAll is CutAll; it returns how many connections it cut.
func (p *Proxy) cutAll() int {
	return cut(p.snapshot())
}

// HalfOpen silences every current connection for good, in both
// directions: from now on it forwards no byte and no FIN or RST, as when
// a NAT or a peer silently forgets it, while new connections flow as
// before. Bytes already in the sockets' buffers still arrive. The silenced
// connections stay until CutAll or Close resets them.
func (p *Proxy) HalfOpen() { p.halfOpen() }

// halfOpen is HalfOpen; it returns the links it silenced.
func (p *Proxy) halfOpen() []*link {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*link, 0, len(p.links))
	for l := range p.links {
		l.silent = true
		out = append(out, l)
	}
	return out
}

// cut resets the links that have not ended yet; it returns how many.
func cut(links []*link) int {
	n := 0
	for _, l := range links {
		select {
		case <-l.cut:
		default:
			n++
		}
		l.end(true)
	}
	return n
}

// Shape sets the shaping of one direction, for current and new
// connections; the zero Shaping turns it off.
func (p *Proxy) Shape(dir Direction, s Shaping) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.shaping[dir] = s
}

// Shaping returns the shaping of one direction.
func (p *Proxy) Shaping(dir Direction) Shaping {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.shaping[dir]
}

// Close stops the proxy: it stops accepting, stops a running [Injector],
// cuts every connection and waits for its goroutines. It is idempotent.
func (p *Proxy) Close() {
	p.mu.Lock()
	first := !p.closed
	p.closed = true
	p.mu.Unlock()
	if first {
		close(p.done)
		p.ln.Close()
	}
	p.cutAll()
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
		p.mu.Lock()
		l := &link{p: p, n: p.accepted, client: c, server: s, cut: make(chan struct{})}
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
		go l.pipe(l.server, l.client, ToTarget)
		go l.pipe(l.client, l.server, ToClient)
	}
}

// pipe copies src to dst, in direction dir, while the proxy is not frozen
// and the link not silent, shaped as the proxy says. Any end of either
// direction ends the whole link.
func (l *link) pipe(dst, src net.Conn, dir Direction) {
	defer l.p.wg.Done()
	buf := make([]byte, 32<<10)
	// Fragment sizes and delays are drawn from a generator seeded by the
	// link's number and direction.
	rng := rand.New(rand.NewPCG(uint64(l.n), uint64(dir)))
	for {
		if !l.gate() {
			return
		}
		n, err := src.Read(buf)
		if !l.gate() { // hold what was read, and any EOF, while frozen
			return
		}
		if n > 0 && !l.forward(dst, buf[:n], dir, rng) {
			return
		}
		if err != nil {
			l.end(false)
			return
		}
	}
}

// forward writes b to dst as the direction's shaping says. It reports
// false if the link ended.
func (l *link) forward(dst net.Conn, b []byte, dir Direction, rng *rand.Rand) bool {
	s := l.p.Shaping(dir)
	if d := s.Delay + jitter(rng, s.Jitter); d > 0 {
		if !l.sleep(d) || !l.gate() {
			return false
		}
	}
	for len(b) > 0 {
		k := len(b)
		if s.Chunk > 0 {
			k = min(k, 1+rng.IntN(s.Chunk))
		}
		if _, err := dst.Write(b[:k]); err != nil {
			l.end(false)
			return false
		}
		b = b[k:]
		if len(b) == 0 {
			break
		}
		if d := jitter(rng, s.Gap); d > 0 && !l.sleep(d) {
			return false
		}
		if !l.gate() {
			return false
		}
	}
	return true
}

// jitter returns a random duration in [0, d), or 0.
func jitter(rng *rand.Rand, d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rng.Int64N(int64(d)))
}

// sleep waits for d; it reports false if the link ended meanwhile.
func (l *link) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.cut:
		return false
	}
}

// gate waits while the proxy is frozen or the link silent; it reports
// false if the link ended meanwhile.
func (l *link) gate() bool {
	for {
		l.p.mu.Lock()
		flowing, silent := l.p.flowing, l.silent
		l.p.mu.Unlock()
		if silent {
			<-l.cut
			return false
		}
		select {
		case <-flowing:
			l.p.mu.Lock()
			silent = l.silent
			l.p.mu.Unlock()
			if !silent {
				return true
			}
		case <-l.cut:
			return false
		}
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
