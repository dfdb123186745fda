package pgbroker

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/wsrpc/wsrpc"
)

// listen is the listening goroutine: it owns the listening connection,
// serves it until it fails, and then reconnects, until Close.
func (b *Broker) listen(conn *pgx.Conn) {
	var dead []*pgx.Conn // abandoned, pgx's cleanup perhaps under way
	defer func() {
		for _, c := range dead {
			<-c.PgConn().CleanupDone()
		}
	}()
	for {
		err := b.serve(conn)
		dead = append(slices.DeleteFunc(dead, cleanedUp), abandon(conn))
		if b.ctx.Err() != nil {
			return
		}
		b.linkLost(err)
		if conn = b.reconnect(); conn == nil {
			return
		}
	}
}

// cleanedUp reports whether pgx is done with conn.
func cleanedUp(conn *pgx.Conn) bool {
	select {
	case <-conn.PgConn().CleanupDone():
		return true
	default:
		return false
	}
}

// linkLost records that the listening connection failed with err, and
// tells the watchers.
func (b *Broker) linkLost(err error) {
	err = fmt.Errorf("pgbroker: %w: listening connection lost: %w", wsrpc.ErrBrokerUnavailable, err)
	b.log.Warn("pgbroker: listening connection lost; reconnecting (until it is back, publishing fails and subscriptions miss what is published)", "err", err)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.down = err
	close(b.lost)
	b.lost = make(chan struct{})
	for _, ch := range b.channels {
		if ch.listened {
			ch.listened = false
			ch.ready = make(chan struct{})
		}
	}
	b.reportLocked(err, nil)
}

// reconnect connects again, with backoff, and returns the connection, or
// nil once the Broker is closed.
func (b *Broker) reconnect() *pgx.Conn {
	bo := &backoff.ExponentialBackOff{
		InitialInterval:     b.opts.Reconnect.InitialInterval,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         b.opts.Reconnect.MaxInterval,
	}
	bo.Reset()
	for try := 1; ; try++ {
		conn, err := b.connect(b.ctx)
		if err == nil {
			if try > 1 {
				b.log.Info("pgbroker: reconnected", "tries", try)
			}
			return conn
		}
		if b.ctx.Err() != nil {
			return nil
		}
		wait := bo.NextBackOff()
		b.log.Info("pgbroker: reconnect failed", "try", try, "retry_in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-b.ctx.Done():
			t.Stop()
			return nil
		}
	}
}

// serve LISTENs on conn to every channel that has subscriptions, and
// dispatches its notifications, until conn fails (it returns why) or the
// Broker is closed.
func (b *Broker) serve(conn *pgx.Conn) error {
	listened := make(map[string]bool)
	for {
		if err := b.sync(conn, listened); err != nil {
			return err
		}
		var ctx context.Context
		var cancel context.CancelFunc
		if b.opts.PingInterval > 0 {
			ctx, cancel = context.WithTimeout(b.ctx, b.opts.PingInterval)
		} else {
			ctx, cancel = context.WithCancel(b.ctx)
		}
		b.mu.Lock()
		if b.dirty {
			b.mu.Unlock()
			cancel()
			continue
		}
		b.interrupt = cancel
		b.mu.Unlock()
		n, err := conn.WaitForNotification(ctx)
		waited := ctx.Err() != nil // the wait ended for a poke or PingInterval
		b.mu.Lock()
		b.interrupt = nil
		poked, check := b.dirty, b.check
		b.check = false
		b.mu.Unlock()
		cancel()
		if n != nil {
			b.dispatch(n)
		}
		switch {
		case err == nil:
		case b.ctx.Err() != nil:
			return wsrpc.ErrClosed
		case conn.IsClosed() || !waited:
			return err
		case !poked || check:
			// Idle for PingInterval, or a Publish failed to reach the
			// server: is it still there?
			pctx, pcancel := context.WithTimeout(b.ctx, b.opts.Timeout)
			err = conn.Ping(pctx)
			pcancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
		}
	}
}

// sync LISTENs on conn to the channels that have subscriptions and are
// not in listened, UNLISTENs those in listened that have none any more,
// and updates listened. Once the connection is new (the Broker down),
// it reports the link back.
func (b *Broker) sync(conn *pgx.Conn, listened map[string]bool) error {
	b.mu.Lock()
	b.dirty = false
	var sql strings.Builder
	var added []string
	for name := range b.channels {
		if !listened[name] {
			fmt.Fprintf(&sql, "LISTEN %s;", pgx.Identifier{name}.Sanitize())
			added = append(added, name)
		}
	}
	var removed []string
	for name := range listened {
		if b.channels[name] == nil {
			fmt.Fprintf(&sql, "UNLISTEN %s;", pgx.Identifier{name}.Sanitize())
			removed = append(removed, name)
		}
	}
	b.mu.Unlock()
	if sql.Len() > 0 {
		ctx, cancel := context.WithTimeout(b.ctx, b.opts.Timeout)
		_, err := conn.Exec(ctx, sql.String())
		cancel()
		if err != nil {
			return fmt.Errorf("LISTEN: %w", err)
		}
		for _, name := range added {
			listened[name] = true
		}
		for _, name := range removed {
			delete(listened, name)
		}
	}
	b.mu.Lock()
	for name, ch := range b.channels {
		if listened[name] && !ch.listened {
			ch.listened = true
			close(ch.ready)
		}
	}
	back := b.down != nil
	b.mu.Unlock()
	if back {
		if b.ownPool {
			// Its connections are likely to the server that went away.
			b.pool.Reset()
		}
		b.log.Warn("pgbroker: listening connection back, every channel listened to again")
		b.mu.Lock()
		b.down = nil
		b.reportLocked(nil, nil)
		b.mu.Unlock()
	}
	return nil
}

// dispatch calls the functions of the subscriptions of n's channel with
// its message.
func (b *Broker) dispatch(n *pgconn.Notification) {
	b.mu.Lock()
	var subs []*subscription
	if ch := b.channels[n.Channel]; ch != nil && ch.listened {
		subs = ch.subs
	}
	b.mu.Unlock()
	if len(subs) == 0 {
		return
	}
	msg := decodePayload(n.Payload)
	for _, s := range subs {
		s.mu.Lock()
		if !s.stopped {
			s.fn(msg)
		}
		s.mu.Unlock()
	}
}

// watcher is one Watch.
type watcher struct {
	fn      func(error)
	stopped bool // guarded by Broker.mu
}

// report is a link state for the watching goroutine to tell.
type report struct {
	err     error
	targets []*watcher
}

// Watch registers fn, called with an error wrapping
// wsrpc.ErrBrokerUnavailable when the listening connection is lost, and
// with nil once it is back and every channel is LISTENed again. The calls
// are made one at a time, in order, on a goroutine of the Broker's own,
// so fn may call the Broker. If the connection is down when Watch is
// called, fn is soon called with the error. Calling stop unregisters fn:
// it is not called after stop returned, except for a call already under
// way; stop may be called from fn.
func (b *Broker) Watch(fn func(err error)) (stop func()) {
	w := &watcher{fn: fn}
	b.mu.Lock()
	b.watchers[w] = struct{}{}
	if b.down != nil {
		b.reportLocked(b.down, []*watcher{w})
	}
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		delete(b.watchers, w)
		w.stopped = true
		b.mu.Unlock()
	}
}

// reportLocked queues err for the watchers in targets, nil meaning all.
func (b *Broker) reportLocked(err error, targets []*watcher) {
	if targets == nil {
		for w := range b.watchers {
			targets = append(targets, w)
		}
	}
	if len(targets) == 0 {
		return
	}
	b.reports = append(b.reports, report{err: err, targets: targets})
	select {
	case b.watching <- struct{}{}:
	default:
	}
}

// watch is the watching goroutine: it tells the watchers the reports, in
// order, until Close.
func (b *Broker) watch() {
	for {
		select {
		case <-b.watching:
		case <-b.ctx.Done():
			return
		}
		for {
			b.mu.Lock()
			if len(b.reports) == 0 || b.ctx.Err() != nil {
				b.mu.Unlock()
				break
			}
			r := b.reports[0]
			b.reports = b.reports[1:]
			b.mu.Unlock()
			for _, w := range r.targets {
				b.mu.Lock()
				stopped := w.stopped || b.ctx.Err() != nil
				b.mu.Unlock()
				if !stopped {
					w.fn(r.err)
				}
			}
		}
	}
}
