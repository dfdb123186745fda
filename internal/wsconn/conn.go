package wsconn

import (
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// maxBatch bounds the bytes a Conn holds before it writes them, and
// maxCopy those of them it copied.
const (
	maxBatch = 256 << 10
	maxCopy  = 64 << 10
)

// minKeep is the smallest write a Conn keeps by reference (see Keep)
// rather than copies.
const minKeep = 2 << 10

// Conn wraps a WebSocket connection's socket so that its writer sends all
// the frames it drained from its queue with one write syscall: while held
// ([Conn.Hold]), writes are appended to a buffer that [Conn.Release]
// sends, and a large payload that the writer promised to keep intact until
// then ([Conn.Keep]) is referenced rather than copied: the batch goes out
// with one writev. Writes from other goroutines (pings, pongs) pass
// through, or join the batch while it is held. Reads go through
// [Conn.Read], which reads ahead while the peer sends a lot. Idle
// connections hold no buffer.
//
// Once the handshake is done, the Conn owns the socket's write deadline
// ([Conn.Own]): every write to the socket gets one timeout from when it
// starts, whoever writes, and the deadlines that gorilla and TLS set
// through SetWriteDeadline are ignored. A control frame's short deadline
// therefore never stays on the socket for the data frames that follow it,
// and frames that bypass gorilla ([Conn.WriteMasked]) are bounded as much
// as those it writes. Before Own, during the handshakes, deadlines set
// through SetWriteDeadline apply as usual. Either way the first write
// sets the socket's write deadline, whatever deadline the socket had
// when New got it.
//
// A Conn is made by [New] or by [Hijacker], and handed to gorilla as its
// net.Conn; [Of] finds it again under a websocket.Conn. Its methods are
// safe for concurrent use, except Read (one reader) and Hold, Keep and
// Release (one writer).
type Conn struct {
	nc    net.Conn     // the socket
	rd    *aheadReader // made on the first busy read; reader goroutine only
	busy  bool         // the last socket read brought a lot: read ahead
	noRaw bool         // the socket has no RawConn: never read ahead
	vec   bool         // the socket writes net.Buffers with one writev
	hdr   [14]byte     // WriteMasked's frame header; under mu

	// mu serializes the socket's writers (the connection's writer and
	// gorilla's control frames) and guards what follows; like gorilla's
	// own write lock it is held across the write, which the owned
	// timeout bounds.
	mu       sync.Mutex
	holding  bool
	buf      *batch
	kept     []byte        // may be referenced until Release; see Keep
	owned    bool          // Own was called: timeout decides the deadline
	timeout  time.Duration // after Own: each socket write's bound; 0: none
	deadline time.Time     // before Own: the deadline the next socket write must have
	applied  time.Time     // the deadline the socket has, once known
	known    bool          // applied is known: the first write sets the deadline, whatever New's socket had
}

// New wraps the socket c. A Conn keeps payloads by reference (Keep) only
// on a *net.TCPConn, which writes them all with one writev; over TLS, for
// one, each buffer would make a record of its own.
func New(c net.Conn) *Conn {
	_, vec := c.(*net.TCPConn)
	return &Conn{nc: c, vec: vec}
}

// Of returns the Conn under ws's socket, found through ws.NetConn() and
// the TLS connection (or anything with a NetConn method) between them, or
// nil if ws's socket was not made by New or a Hijacker. direct reports
// that gorilla writes to the Conn itself, with nothing in between: only
// then may a client's data frames be written with WriteMasked.
func Of(ws *websocket.Conn) (c *Conn, direct bool) {
	nc := ws.NetConn()
	direct = true
	for {
		switch x := nc.(type) {
		case *Conn:
			return x, direct
		case interface{ NetConn() net.Conn }:
			nc, direct = x.NetConn(), false
		default:
			return nil, false
		}
	}
}

// batch is what a held Conn has to write: bytes copied into b, and segs,
// in order: a seg with p == nil stands for b[off:end].
type batch struct {
	b    []byte
	segs []seg
	size int         // bytes in b and in kept segs
	iov  [][]byte    // reused by flush
	bufs net.Buffers // what flush writes: iov, consumed
}

type seg struct {
	off, end int
	p        []byte
}

// add appends p, copied or (keep) by reference.
func (w *batch) add(p []byte, keep bool) {
	w.size += len(p)
	if keep {
		w.segs = append(w.segs, seg{p: p})
		return
	}
	off := len(w.b)
	w.b = append(w.b, p...)
	if n := len(w.segs); n > 0 && w.segs[n-1].p == nil {
		w.segs[n-1].end = len(w.b)
		return
	}
	w.segs = append(w.segs, seg{off: off, end: len(w.b)})
}

func (w *batch) reset() {
	clear(w.segs) // drop the references to kept payloads
	w.b, w.segs, w.size = w.b[:0], w.segs[:0], 0
}

var batchPool = sync.Pool{New: func() any { return &batch{b: make([]byte, 0, 16<<10)} }}

// Write writes p to the socket, or buffers it while the Conn is held. A p
// that is the tail of the slice given to Keep (gorilla passes a server's
// payload through after the header: assumption B) is referenced, not
// copied.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holding {
		keep := c.vec && len(p) >= minKeep && len(p) <= len(c.kept) && &p[len(p)-1] == &c.kept[len(c.kept)-1]
		full := c.buf.size+len(p) > maxBatch || !keep && len(c.buf.b)+len(p) > maxCopy
		if full {
			if err := c.flushLocked(); err != nil {
				return 0, err
			}
		}
		if keep || len(p) <= maxCopy {
			c.buf.add(p, keep)
			return len(p), nil
		}
	}
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	return c.nc.Write(p)
}

// Keep tells a held Conn that p stays intact until Release, so that
// writes of its tail may be referenced instead of copied. The writer
// calls it before it hands p to gorilla's WriteMessage.
func (c *Conn) Keep(p []byte) {
	c.mu.Lock()
	c.kept = p
	c.mu.Unlock()
}

// Hold starts buffering writes, until Release.
func (c *Conn) Hold() {
	c.mu.Lock()
	c.holding = true
	if c.buf == nil {
		c.buf = batchPool.Get().(*batch)
	}
	c.mu.Unlock()
}

// Release writes what was buffered since Hold, stops buffering and
// forgets the slice given to Keep, which the caller may then reuse.
func (c *Conn) Release() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.releaseLocked()
}

// ReleaseWithin is Release for what a held Hijacker's Conn buffered, the
// handshake's response: that write must end within d (d <= 0: no bound),
// whatever deadline the Conn owns; later writes get their own as before.
func (c *Conn) ReleaseWithin(d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var want time.Time
	if d > 0 {
		want = time.Now().Add(d)
	}
	owned, deadline := c.owned, c.deadline
	c.owned, c.deadline = false, want // armLocked gives the socket want
	err := c.releaseLocked()
	c.owned, c.deadline = owned, deadline
	return err
}

// releaseLocked is Release with c.mu held.
func (c *Conn) releaseLocked() error {
	c.holding = false
	c.kept = nil
	err := c.flushLocked()
	if c.buf != nil {
		c.buf.reset()
		if cap(c.buf.b) <= maxCopy {
			batchPool.Put(c.buf)
		}
		c.buf = nil
	}
	return err
}

// flushLocked writes what is buffered, and in any case arms the deadline
// for the write that may follow it.
func (c *Conn) flushLocked() error {
	if err := c.armLocked(); err != nil {
		return err
	}
	w := c.buf
	if w == nil || w.size == 0 {
		return nil
	}
	var err error
	if len(w.segs) == 1 && w.segs[0].p == nil {
		_, err = c.nc.Write(w.b)
	} else {
		for _, s := range w.segs {
			if s.p == nil {
				s.p = w.b[s.off:s.end]
			}
			w.iov = append(w.iov, s.p)
		}
		w.bufs = w.iov                // WriteTo consumes bufs; iov keeps the array
		_, err = w.bufs.WriteTo(c.nc) // one writev on a *net.TCPConn
		clear(w.iov)
		w.iov, w.bufs = w.iov[:0], nil
	}
	w.reset()
	return err
}

// SetWriteDeadline records t for the next write to the socket, until Own
// was called; then it does nothing, since the Conn sets the deadline of
// each write itself (assumption C).
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	if !c.owned {
		c.deadline = t
	}
	c.mu.Unlock()
	return nil
}

// SetDeadline sets both deadlines (the write one as SetWriteDeadline
// does: at the next write, and not at all once owned).
func (c *Conn) SetDeadline(t time.Time) error {
	c.SetWriteDeadline(t)
	return c.nc.SetReadDeadline(t)
}

// SetReadDeadline sets the socket's read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// Own makes the Conn the only one to set the socket's write deadline: from
// now on each write to the socket must end within timeout of its start
// (timeout <= 0: no deadline), and SetWriteDeadline does nothing. Call it
// once the handshake is done.
func (c *Conn) Own(timeout time.Duration) {
	c.mu.Lock()
	c.owned = true
	c.timeout = max(timeout, 0)
	c.mu.Unlock()
}

// deadlineSlack is how stale an owned deadline may get before a write
// moves it: a write starts with between timeout-slack and timeout left,
// and the deadline moves at most once per slack, saving a timer update
// per write.
func deadlineSlack(timeout time.Duration) time.Duration {
	return min(time.Second, timeout/4)
}

// armLocked gives the socket the deadline that the next write must have.
func (c *Conn) armLocked() error {
	want := c.deadline
	if c.owned {
		if c.timeout <= 0 {
			want = time.Time{}
		} else {
			now := time.Now()
			if left := c.applied.Sub(now); c.known && !c.applied.IsZero() && left > c.timeout-deadlineSlack(c.timeout) && left <= c.timeout {
				return nil // fresh enough
			}
			want = now.Add(c.timeout)
		}
	}
	if c.known && want.Equal(c.applied) {
		return nil
	}
	if err := c.nc.SetWriteDeadline(want); err != nil {
		return err
	}
	c.applied, c.known = want, true
	return nil
}

// Close closes the socket.
func (c *Conn) Close() error { return c.nc.Close() }

// LocalAddr returns the socket's local address.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// RemoteAddr returns the socket's remote address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }
