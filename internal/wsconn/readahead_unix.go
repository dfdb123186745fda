//go:build unix

package wsconn

import (
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
)

// aheadSize is the most a Conn reads from its socket at once: more
// than its reader asked for, so that one read syscall brings several
// frames (gorilla's own read buffer is small, to keep idle connections
// small).
const (
	aheadSize = 64 << 10
	minAhead  = 512
)

// ahead is bytes read from a socket and not yet consumed: b[off:].
type ahead struct {
	b   []byte
	off int
}

var aheadPool = sync.Pool{New: func() any { return &ahead{b: make([]byte, aheadSize)} }}

func putAhead(a *ahead) {
	a.b, a.off = a.b[:cap(a.b)], 0
	aheadPool.Put(a)
}

// aheadReader reads a socket ahead of its reader.
type aheadReader struct {
	raw    syscall.RawConn
	readFn func(fd uintptr) bool // readSocket, made once: a closure per read would allocate
	ahead  *ahead                // read, not yet consumed
	got    *ahead                // readSocket's results: got, n, err
	n      int
	err    error
}

// newAheadReader returns a reader for c's socket, or nil if it has none.
func newAheadReader(c net.Conn) *aheadReader {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &aheadReader{raw: raw}
	r.readFn = r.readSocket
	return r
}

// readSocket is RawConn.Read's function: it reads into a pooled buffer,
// taken only now that the socket is readable.
func (r *aheadReader) readSocket(fd uintptr) bool {
	a := aheadPool.Get().(*ahead)
	var n int
	var err error
	for {
		n, err = syscall.Read(int(fd), a.b)
		if err != syscall.EINTR {
			break
		}
	}
	if err == syscall.EAGAIN {
		putAhead(a) // nothing to read: wait without the buffer
		return false
	}
	r.got, r.n, r.err = a, n, err
	return true
}

// Read reads what an earlier read took ahead, or from the socket. While
// the peer sends a lot (the last socket read brought minAhead bytes or
// more), a small read takes up to aheadSize from the socket into a pooled
// buffer, taken only once the socket is readable, so that an idle
// connection, blocked in Read, holds none; a connection that only sees
// pings does not touch the pool. One goroutine reads.
func (c *Conn) Read(p []byte) (int, error) {
	r := c.rd
	if r != nil && r.ahead != nil {
		a := r.ahead
		n := copy(p, a.b[a.off:])
		a.off += n
		if a.off == len(a.b) {
			r.ahead = nil
			putAhead(a)
		}
		return n, nil
	}
	if c.busy {
		// The peer sends a lot, and what came was consumed: let the
		// goroutines that are ready run first, so that this read brings
		// more (fewer reads for the same frames, and fewer that find
		// nothing and wait).
		runtime.Gosched()
	}
	if r == nil && c.busy && !c.noRaw {
		r = newAheadReader(c.nc)
		c.rd, c.noRaw = r, r == nil
	}
	if r == nil || !c.busy || len(p) >= aheadSize/2 || len(p) == 0 {
		n, err := c.nc.Read(p)
		c.busy = n >= min(len(p), minAhead)
		return n, err
	}
	err := r.raw.Read(r.readFn)
	a, n, rerr := r.got, r.n, r.err
	r.got, r.err = nil, nil
	switch {
	case err != nil: // closed, or the read deadline passed
		if a != nil {
			putAhead(a)
		}
		return 0, err
	case rerr != nil:
		putAhead(a)
		return 0, &net.OpError{Op: "read", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}
	case n == 0:
		putAhead(a)
		return 0, io.EOF
	}
	c.busy = n >= minAhead
	a.b = a.b[:n]
	k := copy(p, a.b)
	if k == n {
		putAhead(a)
	} else {
		a.off = k
		r.ahead = a
	}
	return k, nil
}
