package wsrpc

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"time"
)

// maxBatch bounds the bytes a batchConn holds before it writes them.
const maxBatch = 64 << 10

// batchConn wraps a connection's socket so that the writer goroutine sends
// all the frames it drained from the queue with one write syscall: while
// held, writes are appended to a buffer that release sends. Write deadlines
// are applied when bytes really go to the socket, which also saves a timer
// update per frame. Writes from other goroutines (pings, pongs) pass
// through, or join the batch while it is held. Idle connections hold no
// buffer.
type batchConn struct {
	net.Conn

	mu       sync.Mutex
	holding  bool
	buf      *[]byte
	deadline time.Time // the deadline the next socket write must have
	applied  time.Time // the deadline the socket has
}

var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// Write writes p, or buffers it while the conn is held.
func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.holding && len(*b.buf)+len(p) <= maxBatch {
		*b.buf = append(*b.buf, p...)
		return len(p), nil
	}
	if err := b.flushLocked(); err != nil {
		return 0, err
	}
	return b.Conn.Write(p)
}

// SetWriteDeadline records t for the next write to the socket.
func (b *batchConn) SetWriteDeadline(t time.Time) error {
	b.mu.Lock()
	b.deadline = t
	b.mu.Unlock()
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
		b.buf = batchPool.Get().(*[]byte)
	}
	b.mu.Unlock()
}

// release writes what was buffered and stops buffering.
func (b *batchConn) release() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.holding = false
	err := b.flushLocked()
	if b.buf != nil {
		if cap(*b.buf) <= maxBatch {
			*b.buf = (*b.buf)[:0]
			batchPool.Put(b.buf)
		}
		b.buf = nil
	}
	return err
}

func (b *batchConn) flushLocked() error {
	if !b.deadline.Equal(b.applied) {
		if err := b.Conn.SetWriteDeadline(b.deadline); err != nil {
			return err
		}
		b.applied = b.deadline
	}
	if b.buf == nil || len(*b.buf) == 0 {
		return nil
	}
	_, err := b.Conn.Write(*b.buf)
	*b.buf = (*b.buf)[:0]
	return err
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
	h.conn = &batchConn{Conn: c}
	return h.conn, brw, nil
}
