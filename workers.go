package wsrpc

import (
	"context"
	"sync"
	"time"

	"github.com/wsrpc/wsrpc/internal/wire"
)

// workerIdle is how long an idle worker waits for a call before it exits.
const workerIdle = 5 * time.Second

// A job is what a worker runs: an inbound call (*callTask) or a turn of a
// connection's writer (*writerJob).
type job interface{ run() }

// callTask is one inbound call, from the reader to a worker. Tasks are
// pooled: a call costs no allocation for its hand-off.
type callTask struct {
	c   *Conn
	ctx context.Context
	cc  *callCtx
	m   *method
	f   wire.Frame
	in  *buffer
	ci  CallInfo // what the Observer sees of the call, if there is one: in the pooled task, not allocated per call

	passed bool // an ordered call whose handler passed its turn on (PassTurn); Conn.mu guards it
}

var taskPool = sync.Pool{New: func() any { return new(callTask) }}

func (t *callTask) run() {
	for t != nil {
		c, ordered := t.c, t.m.ordered
		c.runHandler(t.ctx, t.cc, t.m, &t.f, t.in, &t.ci)
		if ordered {
			c.mu.Lock()
			ordered = !t.passed // else the turn went on already
			c.mu.Unlock()
		}
		*t = callTask{}
		taskPool.Put(t)
		t = nil
		if ordered {
			t = c.nextOrdered() // the ordered calls run in turn on this goroutine
		}
	}
}

// writerJob runs a connection's writer: the Conn itself, so that starting
// the writer allocates nothing.
type writerJob Conn

func (w *writerJob) run() { (*Conn)(w).writeLoop() }

// workers runs calls on goroutines that outlive one call: a call goes to an
// idle worker if one is waiting, else to a new goroutine, so calls never
// wait for each other. Reusing goroutines saves creating one, and growing
// its stack, for every call. A Server or Client owns one; each call is
// also counted by its connection, which waits for it.
type workers struct {
	tasks chan job // unbuffered: a send succeeds only to an idle worker
	quit  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup // the workers running
}

func newWorkers() *workers {
	return &workers{tasks: make(chan job), quit: make(chan struct{})}
}

// run runs t on a worker. It never waits for other calls.
func (w *workers) run(t job) {
	select {
	case w.tasks <- t:
	default:
		w.wg.Go(func() { w.loop(t) })
	}
}

// loop runs t, then further tasks, until it was idle for a whole period
// or the pool stopped.
func (w *workers) loop(t job) {
	t.run()
	timer := time.NewTimer(workerIdle)
	defer timer.Stop()
	busy := false
	for {
		select {
		case t = <-w.tasks:
			t.run()
			busy = true
		case <-w.quit:
			return
		case <-timer.C:
			if !busy {
				return
			}
			busy = false
			timer.Reset(workerIdle)
		}
	}
}

// stop makes idle workers exit, and busy ones once their call returned.
func (w *workers) stop() { w.once.Do(func() { close(w.quit) }) }

// stopAndWait stops the workers and waits until they have exited: at once
// when every connection using them has ended.
func (w *workers) stopAndWait() {
	w.stop()
	w.wg.Wait()
}
