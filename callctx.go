package wsrpc

import (
	"context"
	"sync"
	"time"
)

// callCtx is the context of a handler serving a call over the negotiated
// extension. It ends when the connection ends, when the deadline the caller
// sent passes, when the caller sends a cancel, or when the handler returns.
//
// context.WithDeadline plus context.WithCancel would cost, for every call,
// two contexts, a timer and a lock on the connection's context. callCtx is
// one allocation: its channel, timer and link to the connection's context
// are made only if the handler asks for Done (or derives a context from it).
type callCtx struct {
	conn     context.Context // the connection's context
	deadline time.Time       // zero: none
	id       []byte          // the call id token, for cancel frames; aliases the request
	idx      int             // position in Conn.running

	mu         sync.Mutex
	done       chan struct{} // made on demand
	err        error
	cause      error
	armed      bool
	stopTimer  func() bool
	stopConn   func() bool
	afterFuncs map[*func()]struct{}
}

var _ context.Context = (*callCtx)(nil)

// Deadline returns the caller's deadline, if it sent one.
func (c *callCtx) Deadline() (time.Time, bool) {
	return c.deadline, !c.deadline.IsZero()
}

// Value answers the connection key; callCtx carries no other values. (It
// does not pass other keys on, so that context.Cause sees its own error.)
func (c *callCtx) Value(key any) any {
	if _, ok := key.(connKey); ok {
		return c.conn.Value(key)
	}
	return nil
}

// Done returns a channel closed when the context ends.
func (c *callCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.err != nil {
			close(c.done)
		}
	}
	c.arm()
	return c.done
}

// Err returns why the context ended, or nil.
func (c *callCtx) Err() error {
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if err := c.conn.Err(); err != nil {
		c.cancel(err, context.Cause(c.conn))
		return err
	}
	if !c.deadline.IsZero() && !time.Now().Before(c.deadline) {
		c.cancel(context.DeadlineExceeded, context.DeadlineExceeded)
		return context.DeadlineExceeded
	}
	return nil
}

// AfterFunc runs f once the context ends. The context package uses it for
// contexts derived from this one, instead of a goroutine each.
func (c *callCtx) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		go f()
		return func() bool { return false }
	}
	if c.afterFuncs == nil {
		c.afterFuncs = make(map[*func()]struct{})
	}
	key := &f
	c.afterFuncs[key] = struct{}{}
	c.arm()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.afterFuncs[key]
		delete(c.afterFuncs, key)
		return ok
	}
}

// arm starts watching the deadline and the connection; c.mu is held.
func (c *callCtx) arm() {
	if c.armed || c.err != nil {
		return
	}
	c.armed = true
	if !c.deadline.IsZero() {
		t := time.AfterFunc(time.Until(c.deadline), func() {
			c.cancel(context.DeadlineExceeded, context.DeadlineExceeded)
		})
		c.stopTimer = t.Stop
	}
	c.stopConn = context.AfterFunc(c.conn, func() {
		c.cancel(c.conn.Err(), context.Cause(c.conn))
	})
}

// cancel ends the context with err and cause, once.
func (c *callCtx) cancel(err, cause error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err, c.cause = err, cause
	if c.cause == nil {
		c.cause = err
	}
	if c.done != nil {
		close(c.done)
	}
	if c.stopTimer != nil {
		c.stopTimer()
	}
	if c.stopConn != nil {
		c.stopConn()
	}
	fs := c.afterFuncs
	c.afterFuncs = nil
	c.mu.Unlock()
	for f := range fs {
		go (*f)()
	}
}

// endedBy reports whether the context ended with cause target.
func (c *callCtx) endedBy(target error) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cause == target
}
