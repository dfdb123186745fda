package wsrpc

import (
	"bufio"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"
)

// maxBatch bounds the bytes a batchConn holds before it writes them, and
// maxCopy those of them it copied.
const (
	maxBatch = 256 << 10
	maxCopy  = 64 << 10
)

// minKeep is the smallest write a batchConn keeps by reference (see keep)
// rather than copies.
const minKeep = 2 << 10

// batchConn wraps a connection's socket so that the writer goroutine sends
// all the frames it drained from the queue with one write syscall: while
// held, writes are appended to a buffer that release sends, and a large
// payload that the writer promised to keep intact until then (keep) is
// referenced rather than copied: the batch goes out with one writev.
// Writes from other goroutines (pings, pongs) pass through, or join the
// batch while it is held. Reads go through Read (readahead.go). Idle
// connections hold no buffer.
//
// Once the handshake is done, the batchConn owns the socket's write
// deadline (own): every write to the socket gets one WriteTimeout from
// when it starts, whoever writes, and the deadlines that gorilla and TLS
// set through SetWriteDeadline are ignored. A control frame's short
// deadline therefore never stays on the socket for the data frames that
// follow it, and frames that bypass gorilla (writeMasked) are bounded as
// much as those it writes. Before own, during the handshakes, deadlines
// set through SetWriteDeadline apply as usual.
type batchConn struct {
	net.Conn
	rd    *aheadReader // made on the first busy read; reader goroutine only
	busy  bool         // the last socket read brought a lot: read ahead
	noRaw bool         // the socket has no RawConn: never read ahead
	vec   bool         // the socket writes net.Buffers with one writev
	hdr   [14]byte     // writeMasked's frame header; under mu

	// mu serializes the socket's writers (the connection's writer and
	// gorilla's control frames) and guards what follows; like gorilla's
	// own write lock it is held across the write, which WriteTimeout
	// bounds.
	mu       sync.Mutex
	holding  bool
	buf      *batch
	kept     []byte        // may be referenced until release; see keep
	owned    bool          // own was called: timeout decides the deadline
	timeout  time.Duration // after own: each socket write's bound; 0: none
	deadline time.Time     // before own: the deadline the next socket write must have
	applied  time.Time     // the deadline the socket has
}

// batch is what a held batchConn has to write: bytes copied into b, and
// segs, in order: a seg with p == nil stands for b[off:end].
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

// Write writes p, or buffers it while the conn is held.
func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.holding {
		// p is kept by reference if it is the tail of the kept slice:
		// gorilla passes a server's payload through after the header.
		keep := b.vec && len(p) >= minKeep && len(p) <= len(b.kept) && &p[len(p)-1] == &b.kept[len(b.kept)-1]
		full := b.buf.size+len(p) > maxBatch || !keep && len(b.buf.b)+len(p) > maxCopy
		if full {
			if err := b.flushLocked(); err != nil {
				return 0, err
			}
		}
		if keep || len(p) <= maxCopy {
			b.buf.add(p, keep)
			return len(p), nil
		}
	}
	if err := b.flushLocked(); err != nil {
		return 0, err
	}
	return b.Conn.Write(p)
}

// keep tells a held batchConn that p stays intact until release, so that
// writes of its tail may be referenced instead of copied.
func (b *batchConn) keep(p []byte) {
	b.mu.Lock()
	b.kept = p
	b.mu.Unlock()
}

// SetWriteDeadline records t for the next write to the socket, until own
// was called; then it does nothing, since the batchConn sets the deadline
// of each write itself.
func (b *batchConn) SetWriteDeadline(t time.Time) error {
	b.mu.Lock()
	if !b.owned {
		b.deadline = t
	}
	b.mu.Unlock()
	return nil
}

// own makes the batchConn the only one to set the socket's write
// deadline: from now on each write to the socket must end within timeout
// of its start (timeout <= 0: no deadline).
func (b *batchConn) own(timeout time.Duration) {
	b.mu.Lock()
	b.owned = true
	b.timeout = max(timeout, 0)
	b.mu.Unlock()
}

// deadlineSlack is how stale an owned deadline may get before a write
// moves it: a write starts with between timeout-slack and timeout left,
// and the deadline moves at most once per slack, saving a timer update
// per write.
func deadlineSlack(timeout time.Duration) time.Duration {
	return min(time.Second, timeout/4)
}

// armLocked gives the socket the deadline that the next write must have.
func (b *batchConn) armLocked() error {
	want := b.deadline
	if b.owned {
		if b.timeout <= 0 {
			want = time.Time{}
		} else {
			now := time.Now()
			if left := b.applied.Sub(now); !b.applied.IsZero() && left > b.timeout-deadlineSlack(b.timeout) && left <= b.timeout {
				return nil // fresh enough
			}
			want = now.Add(b.timeout)
		}
	}
	if want.Equal(b.applied) {
		return nil
	}
	if err := b.Conn.SetWriteDeadline(want); err != nil {
		return err
	}
	b.applied = want
	return nil
}

// SetDeadline sets both deadlines (the write one lazily).
func (b *batchConn) SetDeadline(t time.Time) error {
	b.SetWriteDeadline(t)
	return b.Conn.SetReadDeadline(t)
}

// hold starts buffering writes.
func (b *batchConn) hold() {
	b.mu.Lock()
	b.holding = true
	if b.buf == nil {
		b.buf = batchPool.Get().(*batch)
	}
	b.mu.Unlock()
}

// release writes what was buffered and stops buffering.
func (b *batchConn) release() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.holding = false
	b.kept = nil
	err := b.flushLocked()
	if b.buf != nil {
		b.buf.reset()
		if cap(b.buf.b) <= maxCopy {
			batchPool.Put(b.buf)
		}
		b.buf = nil
	}
	return err
}

// flushLocked writes what is buffered, and in any case arms the deadline
// for the write that may follow it.
func (b *batchConn) flushLocked() error {
	if err := b.armLocked(); err != nil {
		return err
	}
	w := b.buf
	if w == nil || w.size == 0 {
		return nil
	}
	var err error
	if len(w.segs) == 1 && w.segs[0].p == nil {
		_, err = b.Conn.Write(w.b)
	} else {
		for _, s := range w.segs {
			if s.p == nil {
				s.p = w.b[s.off:s.end]
			}
			w.iov = append(w.iov, s.p)
		}
		w.bufs = w.iov                  // WriteTo consumes bufs; iov keeps the array
		_, err = w.bufs.WriteTo(b.Conn) // one writev on a *net.TCPConn
		clear(w.iov)
		w.iov, w.bufs = w.iov[:0], nil
	}
	w.reset()
	return err
}

// newBatchConn wraps c.
func newBatchConn(c net.Conn) *batchConn {
	_, vec := c.(*net.TCPConn) // TLS, for one, would make a record of each buffer
	return &batchConn{Conn: c, vec: vec}
}

// batchOf finds the batchConn under c, through TLS, or returns nil.
func batchOf(c net.Conn) *batchConn {
	for {
		switch x := c.(type) {
		case *batchConn:
			return x
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return nil
		}
	}
}

// hijacker hands gorilla's Upgrade a batchConn instead of the raw socket.
type hijacker struct {
	http.ResponseWriter
	conn *batchConn
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = newBatchConn(c)
	return h.conn, brw, nil
}

// writeMasked writes p as one final, masked data frame of type mt, as a
// client must send it: p is masked in place, so the caller gives it up,
// and while the conn is held it is kept by reference rather than copied.
// Control frames still go through gorilla, each in one Write, so they
// never land inside this frame.
func (b *batchConn) writeMasked(mt int, p []byte) error {
	key := rand.Uint32()
	maskBytes(p, key)
	b.mu.Lock()
	defer b.mu.Unlock()
	hdr := b.hdr[:0]
	hdr = append(hdr, 0x80|byte(mt)) // FIN, opcode
	switch n := len(p); {
	case n <= 125:
		hdr = append(hdr, 0x80|byte(n)) // masked, length
	case n <= 0xffff:
		hdr = binary.BigEndian.AppendUint16(append(hdr, 0x80|126), uint16(n))
	default:
		hdr = binary.BigEndian.AppendUint64(append(hdr, 0x80|127), uint64(n))
	}
	hdr = binary.LittleEndian.AppendUint32(hdr, key)

	if b.holding {
		keep := b.vec && len(p) >= minKeep
		copied := len(hdr)
		if !keep {
			copied += len(p)
		}
		if b.buf.size+len(hdr)+len(p) > maxBatch || len(b.buf.b)+copied > maxCopy {
			if err := b.flushLocked(); err != nil {
				return err
			}
		}
		if keep || copied <= maxCopy {
			b.buf.add(hdr, false)
			b.buf.add(p, keep)
			return nil
		}
	}
	if err := b.flushLocked(); err != nil {
		return err
	}
	// Not held (or too large to hold): one Write of a copy, rare.
	_, err := b.Conn.Write(append(hdr[:len(hdr):len(hdr)], p...))
	return err
}

// maskBytes XORs p with the masking key, whose first byte applies to
// p[0] (the key as written little-endian after the header), eight bytes
// at a time.
func maskBytes(p []byte, key uint32) {
	k := uint64(key) | uint64(key)<<32
	for len(p) >= 8 {
		binary.LittleEndian.PutUint64(p, binary.LittleEndian.Uint64(p)^k)
		p = p[8:]
	}
	for i := range p {
		p[i] ^= byte(k >> (8 * (i % 4)))
	}
}
