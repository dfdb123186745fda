package wstest

import (
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// BufferSize is how many bytes one direction of a [Pipe] holds that its
// reader has not read yet: a Write returns as soon as its bytes are in
// the buffer, and blocks only while the buffer is full, as a socket's
// write does while its peer is not reading.
const BufferSize = 64 << 10

// Pipe returns the two ends of an in-memory, full-duplex connection.
//
// Unlike [net.Pipe], whose Write waits until the peer has read every
// byte, each direction is buffered ([BufferSize]): two peers that write
// at the same time, such as two WebSocket readers answering each other's
// pings, do not deadlock. Deadlines work as on a socket, including ones
// set while a Read or Write waits, and a Conn has no file descriptor
// (it is no syscall.Conn), so nothing can read it past its Read method.
//
// Everything a Conn waits on is a channel or a timer, so a goroutine
// blocked in Read or Write is durably blocked inside a testing/synctest
// bubble, and deadlines follow the bubble's fake clock: create and use
// the pipe in the same bubble. A goroutine waiting for a sync.Mutex is
// not durably blocked, though: while a Write waits on a full buffer with
// a mutex held (as internal/wsconn holds its own), another goroutine
// that waits for that mutex stops the fake clock, and no deadline passes.
// A test that lets a buffer fill should leave nothing else writing.
func Pipe() (a, b *Conn) {
	return pipe(addr("pipe"), addr("pipe"))
}

func pipe(aAddr, bAddr net.Addr) (a, b *Conn) {
	ab, ba := newStream(), newStream()
	a = newConn(ba, ab, aAddr, bAddr)
	b = newConn(ab, ba, bAddr, aAddr)
	return a, b
}

// Conn is one end of a [Pipe], or of a connection made through a
// [Listener]: a net.Conn in memory. Its methods are safe for concurrent
// use.
type Conn struct {
	rd, wr        *stream // what the peer wrote to us; what we write to it
	local, remote net.Addr
	rdl, wdl      deadline

	once sync.Once
	done chan struct{} // closed by Close
}

func newConn(rd, wr *stream, local, remote net.Addr) *Conn {
	return &Conn{
		rd: rd, wr: wr, local: local, remote: remote,
		rdl: newDeadline(), wdl: newDeadline(),
		done: make(chan struct{}),
	}
}

// Read reads what the peer wrote. It waits while there is nothing to read
// or the link is frozen, and returns io.EOF once the peer has closed its
// end and everything it wrote before was read. A passed read deadline
// fails it with an error that wraps os.ErrDeadlineExceeded, and a Close of
// this end with one that wraps net.ErrClosed.
func (c *Conn) Read(p []byte) (int, error) {
	s := c.rd
	for {
		if err := c.check(&c.rdl); err != nil {
			return 0, c.opError("read", err)
		}
		if len(p) == 0 {
			return 0, nil
		}
		s.mu.Lock()
		if !s.frozen {
			if len(s.buf) > 0 {
				n := copy(p, s.buf)
				s.buf = s.buf[n:]
				if len(s.buf) == 0 {
					s.buf = nil
				}
				s.changedLocked()
				s.mu.Unlock()
				return n, nil
			}
			if s.wclosed {
				s.mu.Unlock()
				return 0, io.EOF
			}
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-c.rdl.wait():
		case <-c.done:
		}
	}
}

// Write writes p to the peer: it returns once all of p is buffered, and
// waits while the buffer is full. Writing to a peer that closed its end
// fails with an error that wraps io.ErrClosedPipe (while the link is not
// frozen: a frozen link tells nothing). A passed write deadline fails it,
// with the bytes buffered so far, with an error that wraps
// os.ErrDeadlineExceeded.
func (c *Conn) Write(p []byte) (int, error) {
	s := c.wr
	n := 0
	for {
		if err := c.check(&c.wdl); err != nil {
			return n, c.opError("write", err)
		}
		s.mu.Lock()
		if s.rclosed && !s.frozen {
			s.mu.Unlock()
			return n, c.opError("write", io.ErrClosedPipe)
		}
		if room := BufferSize - len(s.buf); room > 0 && len(p) > 0 {
			k := min(room, len(p))
			s.buf = append(s.buf, p[:k]...)
			p = p[k:]
			n += k
			s.changedLocked()
		}
		if len(p) == 0 {
			s.mu.Unlock()
			return n, nil
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-c.wdl.wait():
		case <-c.done:
		}
	}
}

// check returns why an operation under deadline d cannot proceed: the
// Conn is closed, or d has passed; otherwise nil.
func (c *Conn) check(d *deadline) error {
	select {
	case <-c.done:
		return net.ErrClosed
	default:
	}
	select {
	case <-d.wait():
		return os.ErrDeadlineExceeded
	default:
	}
	return nil
}

func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "pipe", Source: c.local, Addr: c.remote, Err: err}
}

// Close closes this end: its own Reads and Writes fail at once, the peer
// reads io.EOF after what was written before, and the peer's Writes fail.
// Close is idempotent.
func (c *Conn) Close() error {
	c.once.Do(func() {
		close(c.done)
		c.wr.mu.Lock()
		c.wr.wclosed = true
		c.wr.changedLocked()
		c.wr.mu.Unlock()
		c.rd.mu.Lock()
		c.rd.rclosed = true
		c.rd.buf = nil // never to be read
		c.rd.changedLocked()
		c.rd.mu.Unlock()
	})
	return nil
}

// Freeze stalls the link both ways, as a network that stops delivering
// anything without closing anything: neither end reads what the other
// wrote, nor learns that it closed, until [Conn.Thaw]. Writes go on
// filling the buffers, and then wait. Deadlines still pass.
func (c *Conn) Freeze() { c.setFrozen(true) }

// Thaw undoes [Conn.Freeze]: what was written meanwhile is delivered.
func (c *Conn) Thaw() { c.setFrozen(false) }

func (c *Conn) setFrozen(frozen bool) {
	for _, s := range []*stream{c.rd, c.wr} {
		s.mu.Lock()
		s.frozen = frozen
		s.changedLocked()
		s.mu.Unlock()
	}
}

// LocalAddr returns this end's address.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets the read and the write deadline.
func (c *Conn) SetDeadline(t time.Time) error {
	c.rdl.set(t)
	c.wdl.set(t)
	return nil
}

// SetReadDeadline sets the deadline for Reads, including one that waits
// now. A zero t means none.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.rdl.set(t)
	return nil
}

// SetWriteDeadline sets the deadline for Writes, including one that waits
// now. A zero t means none.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.wdl.set(t)
	return nil
}

// stream is one direction of a pipe.
type stream struct {
	mu      sync.Mutex    // guards the fields below
	buf     []byte        // written, not read yet
	wclosed bool          // the writing end closed: EOF after buf
	rclosed bool          // the reading end closed: writes fail
	frozen  bool          // nothing is read, and rclosed is not told
	changed chan struct{} // closed, and replaced, whenever any of the above changes
}

func newStream() *stream { return &stream{changed: make(chan struct{})} }

// changedLocked wakes every Read and Write waiting on s.
func (s *stream) changedLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// deadline is a Conn's read or write deadline: a channel closed when it
// passes, by a timer (so that a fake clock moves it), replaced when the
// deadline is moved again.
type deadline struct {
	mu     sync.Mutex // guards the fields below
	timer  *time.Timer
	passed chan struct{}
}

func newDeadline() deadline { return deadline{passed: make(chan struct{})} }

// set moves the deadline to t (zero: none).
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.passed // the timer fired: its function closes passed
	}
	d.timer = nil
	closed := isClosed(d.passed)
	if t.IsZero() {
		if closed {
			d.passed = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.passed = make(chan struct{})
		}
		passed := d.passed
		d.timer = time.AfterFunc(dur, func() { close(passed) })
		return
	}
	if !closed {
		close(d.passed)
	}
}

// wait returns a channel closed once the deadline has passed.
func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.passed
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// addr is the address of an end of a pipe.
type addr string

func (addr) Network() string  { return "pipe" }
func (a addr) String() string { return string(a) }
