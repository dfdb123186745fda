package wsrpc

import (
	"context"
	"errors"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// lazyDone is a channel closed once, made only when someone waits for it:
// most connections never need it, and idle ones should not pay for it.
type lazyDone struct {
	ch     chan struct{}
	closed bool
}

var closedChan = func() chan struct{} { ch := make(chan struct{}); close(ch); return ch }()

// wait returns the channel; mu guards d.
func (d *lazyDone) wait(mu *sync.Mutex) <-chan struct{} {
	mu.Lock()
	defer mu.Unlock()
	if d.ch == nil {
		if d.closed {
			return closedChan
		}
		d.ch = make(chan struct{})
	}
	return d.ch
}

// close closes the channel; mu guards d.
func (d *lazyDone) close(mu *sync.Mutex) {
	mu.Lock()
	defer mu.Unlock()
	d.closed = true
	if d.ch != nil {
		close(d.ch)
	}
}

// endErr returns the error for calls on an ended connection; c.mu held.
func (c *Conn) endErr() error {
	if c.cause == nil || errors.Is(c.cause, ErrClosed) {
		return ErrClosed
	}
	return errorf("%w: %w", ErrConnectionLost, c.cause)
}

// lockedEndErr is endErr for a caller that does not hold c.mu.
func (c *Conn) lockedEndErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endErr()
}

// join counts a goroutine that works for c in c.wg, unless the connection
// has ended (cleanup may be past its wait): then it reports false.
func (c *Conn) join() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	c.wg.Add(1)
	return true
}

// fail ends a connection whose link is broken.
func (c *Conn) fail(err error) {
	c.mu.Lock()
	if c.cause == nil {
		c.cause = err
	}
	c.mu.Unlock()
	c.ws.NetConn().Close() // the reader wakes up and cleans up
}

// Close closes the connection: it sends a close frame (status 1000) after
// the frames already queued, waits briefly for the peer's close frame, and
// closes the socket. Calls still waiting fail with [ErrClosed]; handlers'
// contexts are canceled. Close is idempotent and safe to call from handlers
// and hooks. It returns when the read loop has stopped; [Conn.Done] tells
// when every handler has returned too.
func (c *Conn) Close() error {
	c.close(websocket.CloseNormalClosure, "", ErrClosed)
	return nil
}

// CloseWith closes the connection as [Conn.Close] does, with a WebSocket
// close status and reason of the caller's choosing, which the peer sees: a
// code from 4000 to 4999 for an application's own reasons (pubsub closes a
// slow subscriber with 4008), or one of RFC 6455's. A reason longer than
// the 123 bytes a close frame holds is cut (at a character boundary). The
// hooks see the cause [ErrClosed], as for Close.
func (c *Conn) CloseWith(code int, reason string) error {
	c.close(code, truncateReason(reason), ErrClosed)
	return nil
}

// maxCloseReason is the most a close frame's reason can hold, in bytes.
const maxCloseReason = 123

// truncateReason cuts a close reason to maxCloseReason bytes, on a UTF-8
// character boundary.
func truncateReason(s string) string {
	if len(s) <= maxCloseReason {
		return s
	}
	n := maxCloseReason
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func (c *Conn) close(code int, reason string, cause error) {
	c.mu.Lock()
	if c.cause == nil {
		c.cause = cause
	}
	first := !c.closeStarted
	c.closeStarted = true
	c.mu.Unlock()
	var stop func() bool
	if first {
		out := getBuf()
		out.b = append(out.b, websocket.FormatCloseMessage(code, reason)...)
		out.close = true
		c.push(out)
		// The socket closes once the peer's close frame came, or after
		// CloseTimeout. Without one, the writer closes it as soon as the
		// close frame is out, and at the latest after WriteTimeout.
		wait := c.cfg.CloseTimeout
		if wait <= 0 {
			wait = c.cfg.WriteTimeout
		}
		if wait > 0 {
			stop = time.AfterFunc(wait, func() { c.ws.NetConn().Close() }).Stop
		}
	}
	if c.inHook.Load() > 0 {
		// Called on the reader (a hook, or a Go call's done): it will see
		// the close, or the timer closes the socket under it.
		return
	}
	<-c.readerDone.wait(&c.mu)
	if stop != nil {
		stop()
	}
}

// cleanup runs when the read loop has ended, in its goroutine; opened
// says that the connection came up (the Observer and the hooks saw it).
func (c *Conn) cleanup(readErr error, opened bool) {
	c.mu.Lock()
	c.closing = true
	if c.cause == nil {
		c.cause = readErr
	}
	if c.ka != nil {
		c.ka.Stop()
	}
	if c.drained != nil {
		close(c.drained)
		c.drained = nil
	}
	cause := c.cause
	lost := c.endErr()
	c.mu.Unlock()

	c.cancel(cause)
	c.pending.failAll(lost)
	c.releaseWritten(c.q.close(), false)
	c.ws.Close()
	c.readerDone.close(&c.mu)
	c.wg.Wait()

	if !opened {
		c.logger().Debug("handshake failed", "cause", cause)
		c.done.close(&c.mu)
		return
	}
	c.logger().Debug("disconnected", "cause", cause) // OnDisconnect gets the cause
	if obs := c.cfg.Observer; obs != nil {
		obs.ConnClosed(c, cause)
	}
	if c.cfg.OnDisconnect != nil {
		c.cfg.OnDisconnect(c, cause)
	}
	for _, f := range c.cfg.hooks.onDisconnect() {
		f(c, cause)
	}
	c.done.close(&c.mu)
}

func isNormalClose(err error) bool {
	return websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway)
}

// drain stops new inbound calls and waits until the running ones finished,
// or ctx ends.
func (c *Conn) drain(ctx context.Context) error {
	c.mu.Lock()
	c.draining = true
	if c.calls == 0 || c.closing {
		c.mu.Unlock()
		return nil
	}
	if c.drained == nil {
		c.drained = make(chan struct{})
	}
	ch := c.drained
	c.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
