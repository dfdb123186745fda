package wsrpc

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// send queues a frame without a caller's context (answers and errors).
func (c *Conn) send(out *buffer) {
	if err := c.enqueue(c.ctx, out); err != nil {
		c.logger().Debug("frame dropped", "err", err)
	}
}

// trySend queues a frame only if there is room now.
func (c *Conn) trySend(out *buffer) {
	if queued, ended, _, _ := c.queue(out, false, false); !queued && !ended {
		putBuf(out)
		c.observeDropped()
	}
}

// observeDropped tells the Observer of a frame given up on.
func (c *Conn) observeDropped() {
	if obs := c.cfg.Observer; obs != nil {
		obs.Queue(c, 0, 0, 1)
	}
}

// sendQueue is a connection's frames waiting for its writer, bounded in
// frames and in bytes. The writer runs only while there is something to
// write (see Conn.pushLocked): an idle connection has no writer goroutine.
type sendQueue struct {
	maxFrames int   // data frames queued or being written
	maxBytes  int64 // their bytes; 0: no limit

	mu      sync.Mutex // guards the fields below
	frames  []*buffer  // waiting for the writer, in order
	spare   []*buffer  // the writer's last batch, for reuse
	running bool       // a writer is running (or about to)
	noYield bool       // the running writer was started by a notify (buffer.fanout)
	closed  bool       // the connection ended: nothing more is queued
	held    int        // data frames queued or being written
	size    int64      // their bytes (buffer capacity)
	room    chan struct{}
	// room is closed when frames leave the queue, for those waiting to
	// queue one (made by the first of them).
}

// fitsLocked reports whether the queue has room for a data frame of size
// bytes: fewer than maxFrames, and maxBytes at most with it, unless the
// queue is empty (a frame always fits alone).
func (q *sendQueue) fitsLocked(size int64) bool {
	if q.held == 0 {
		return true
	}
	return q.held < q.maxFrames && (q.maxBytes <= 0 || q.size+size <= q.maxBytes)
}

// take hands the writer the frames queued, or reports that there are
// none, in which case the writer stops (running is false).
func (q *sendQueue) take() []*buffer {
	q.mu.Lock()
	defer q.mu.Unlock()
	batch := q.frames
	if len(batch) == 0 {
		q.running = false
		return nil
	}
	q.frames, q.spare = q.spare, nil
	return batch
}

// reuse gives back the slice of a batch the writer is done with.
func (q *sendQueue) reuse(batch []*buffer) {
	q.mu.Lock()
	q.spare = batch[:0]
	q.mu.Unlock()
}

// close stops the queue and returns the frames still in it.
func (q *sendQueue) close() []*buffer {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	left := q.frames
	q.frames = nil
	return left
}

// release frees the buffers of frames taken off the queue, and their room,
// and reports the number and bytes of the data frames among them.
func (q *sendQueue) release(batch []*buffer) (int, int64) {
	var frames int
	var size int64
	for i, out := range batch {
		if out.qsize > 0 {
			frames++
			size += out.qsize
		}
		putBuf(out)
		batch[i] = nil
	}
	if frames == 0 {
		return 0, 0
	}
	q.mu.Lock()
	q.held -= frames
	q.size -= size
	room := q.room
	q.room = nil
	q.mu.Unlock()
	if room != nil {
		close(room)
	}
	return frames, size
}

// releaseWritten releases the frames of a batch the writer is done with,
// and tells the Observer; written says whether they went out (or were
// dropped: the connection ended first).
func (c *Conn) releaseWritten(batch []*buffer, written bool) {
	obs := c.cfg.Observer
	if obs == nil {
		c.q.release(batch)
		return
	}
	for _, out := range batch {
		if written && out.qsize > 0 {
			obs.Frame(c, Outbound, len(out.b))
		}
	}
	frames, size := c.q.release(batch)
	dropped := 0
	if !written {
		dropped = frames
	}
	if frames > 0 {
		obs.Queue(c, -frames, -size, dropped)
	}
}

// queue queues out if the send queue has room now, taking ownership of it.
// Otherwise it returns false and out stays the caller's, unless the
// connection has ended: then it reports that, having released out. With
// inline set, it never starts a writer task: it reports start when the
// caller must run c.writeLoop (already counted in c.wg), because no writer
// runs. With wantRoom set, it also returns, when out does not fit, the
// channel closed when room frees up: made under the same lock as the
// failed check, so that no release between the two is missed.
func (c *Conn) queue(out *buffer, inline, wantRoom bool) (queued, ended, start bool, room <-chan struct{}) {
	size := max(int64(cap(out.b)), 1)
	q := &c.q
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		putBuf(out)
		c.observeDropped()
		return false, true, false, nil
	}
	if !q.fitsLocked(size) {
		if wantRoom {
			if q.room == nil {
				q.room = make(chan struct{})
			}
			room = q.room
		}
		q.mu.Unlock()
		return false, false, false, room
	}
	q.held++
	q.size += size
	out.qsize = size
	start = c.pushLocked(out, inline)
	if obs := c.cfg.Observer; obs != nil {
		obs.Queue(c, 1, size, 0)
	}
	return true, false, start, nil
}

// enqueue waits for room in the send queue, then queues out. It takes
// ownership of out.
func (c *Conn) enqueue(ctx context.Context, out *buffer) error {
	for {
		queued, ended, _, room := c.queue(out, false, true)
		if queued {
			return nil
		}
		if ended {
			return c.lockedEndErr()
		}
		select {
		case <-room:
		case <-ctx.Done():
			putBuf(out)
			c.observeDropped()
			return ctx.Err()
		case <-c.ctx.Done():
			putBuf(out)
			c.observeDropped()
			return c.lockedEndErr()
		}
	}
}

// push queues a control frame, which takes no room in the send queue.
func (c *Conn) push(out *buffer) bool {
	c.q.mu.Lock()
	if c.q.closed {
		c.q.mu.Unlock()
		putBuf(out)
		return false
	}
	c.pushLocked(out, false)
	return true
}

// pushLocked appends out to the queue, unlocks c.q.mu and starts the
// writer if it is idle. The writer is a task on the workers, counted in
// c.wg, unless inline is set: then pushLocked reports that the caller must
// run it.
func (c *Conn) pushLocked(out *buffer, inline bool) (start bool) {
	q := &c.q
	q.frames = append(q.frames, out)
	start = !q.running
	if start {
		q.running = true
		q.noYield = out.fanout
		c.wg.Add(1)
	}
	q.mu.Unlock()
	if start && !inline {
		c.cfg.workers.run((*writerJob)(c))
		return false
	}
	return start
}

// writerYields is whether the writer yields before taking a batch; only
// BenchmarkWriterYield turns it off, to show what it buys.
var writerYields = true

// writeLoop writes queued frames until the queue is empty, then exits; the
// next push starts it again. At most one runs at a time, and it alone
// owns c.werr and c.closeSent.
func (c *Conn) writeLoop() {
	defer c.wg.Done()
	// A writer started by a pub/sub notify does not yield: its publisher
	// queues one frame here and goes on to the next subscriber, so the
	// yield would cost each delivery a scheduling round and let the reads
	// of the first subscribers' answers cut in before the writes to the
	// last ones (the fan-out's latency). It holds for the writer's whole
	// run: answers queued meanwhile go without the yield too, which costs
	// only batching. pushLocked set noYield before this writer started,
	// and sets it again only once it has stopped.
	yield := writerYields && !c.q.noYield
	for {
		// Let the goroutines that are ready to queue frames (handlers
		// finishing, callers) do so first, so that one write carries many
		// (BenchmarkWriterYield measures it).
		if yield {
			runtime.Gosched()
		}
		q := c.q.take()
		if q == nil {
			return
		}

		if c.bc == nil && c.werr == nil && c.cfg.WriteTimeout > 0 {
			// No wsconn.Conn to own the deadline (a socket that is not
			// ours): gorilla sets this one on each of its writes.
			c.werr = c.ws.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout))
		}
		// The frames go to the socket together, in one write where they fit.
		if c.bc != nil {
			c.bc.Hold()
		}
		// A payload may be written by reference (wsconn.Conn.Keep): the
		// buffers are released once the batch is out.
		for _, out := range q {
			if c.werr == nil && !c.closeSent {
				if c.bc != nil && !c.direct {
					c.bc.Keep(out.b) // direct writes keep it without being told
				}
				c.werr = c.writeFrame(out)
				// Nothing may follow a close frame. gorilla would refuse
				// its own writes (ErrCloseSent) but not the direct ones.
				c.closeSent = out.close
			}
		}
		if c.bc != nil {
			if err := c.bc.Release(); c.werr == nil {
				c.werr = err
			}
		}
		c.releaseWritten(q, c.werr == nil)
		if c.werr != nil {
			c.fail(fmt.Errorf("write: %w", c.werr))
		} else if c.closeSent && c.cfg.CloseTimeout <= 0 {
			c.ws.NetConn().Close() // CloseTimeout < 0: the close frame is out, don't wait for the peer's
		}
		c.q.reuse(q)
	}
}

func (c *Conn) writeFrame(out *buffer) error {
	if out.close {
		return c.ws.WriteMessage(websocket.CloseMessage, out.b)
	}
	if out.ping {
		return c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.cfg.KeepAlive.Timeout))
	}
	mt := websocket.TextMessage
	if c.cfg.BinaryFrames {
		mt = websocket.BinaryMessage
	}
	if c.direct {
		if c.up != nil {
			return c.bc.WriteUnmasked(mt, out.b)
		}
		return c.bc.WriteMasked(mt, out.b)
	}
	return c.ws.WriteMessage(mt, out.b)
}

// buffer is a pooled frame buffer.
type buffer struct {
	b     []byte
	close bool  // a close frame
	ping  bool  // a ping control frame
	qsize int64 // the room it takes in the send queue (data frames)
	utf8  bool  // a frame read, checked to be valid UTF-8
	// fanout marks a pub/sub notify (internal/fanout): a writer it starts
	// does not yield (see writeLoop).
	fanout bool
	// readAt is when a frame read arrived, as time.Since(Conn.start): an
	// inbound call's CallInfo.Start, without another clock read.
	readAt time.Duration
}

var bufPool = sync.Pool{New: func() any { return &buffer{b: make([]byte, 0, 1024)} }}

const maxPooledBuffer = 64 << 10

func getBuf() *buffer { return bufPool.Get().(*buffer) }

func putBuf(b *buffer) {
	if b == nil || cap(b.b) > maxPooledBuffer {
		return
	}
	*b = buffer{b: b.b[:0]}
	bufPool.Put(b)
}

func (b *buffer) readFrom(r io.Reader) error {
	for {
		if len(b.b) == cap(b.b) {
			b.b = append(b.b, 0)[:len(b.b)]
		}
		n, err := r.Read(b.b[len(b.b):cap(b.b)])
		b.b = b.b[:len(b.b)+n]
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
