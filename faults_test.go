package wsrpc

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsrpc/wsrpc/internal/testproxy"
)

var (
	faultCalls = flag.Int("faults.calls", 2000, "TestFaults: calls each way, at least (docs/reliability.md: 10000)")
	faultSeed  = flag.Uint64("faults.seed", 1, "TestFaults: seed of the fault schedule")
	// faultCallTimeout is each call's deadline.
	faultCallTimeout = flag.Duration("faults.timeout", 2*time.Second, "TestFaults: each call's deadline")
)

// Settings of the fault run.
const (
	faultWorkers = 16 // callers on each side
	// faultSlack is how long past its deadline a call may take to return
	// before it counts as hung: generous, for -race on a loaded machine.
	faultSlack = 5 * time.Second
)

// faultArgs are the arguments of "fecho": Text comes back; the handler
// first sleeps SleepUS microseconds, so that some calls are in flight when
// a fault strikes.
type faultArgs struct {
	Text    string `json:"text"`
	SleepUS int    `json:"sleep_us"`
}

// runCounter counts how many times a handler ran for each payload.
type runCounter struct {
	mu   sync.Mutex
	runs map[string]int
}

func (r *runCounter) add(text string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs[text]++
}

func (r *runCounter) get(text string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.runs[text]
}

// faultMux exposes "fecho", which counts its runs in runs.
func faultMux(runs *runCounter) *Mux {
	m := NewMux()
	Register(m, "fecho", func(ctx context.Context, a faultArgs) (string, error) {
		runs.add(a.Text)
		if a.SleepUS > 0 {
			t := time.NewTimer(time.Duration(a.SleepUS) * time.Microsecond)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		return a.Text, nil
	})
	return m
}

// newestConn tracks a server's newest connection, through which the server
// calls the client: after a reconnect, the new one.
type newestConn struct {
	mu      sync.Mutex
	conn    *Conn
	changed chan struct{} // closed and replaced when conn changes
}

func (n *newestConn) set(c *Conn) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.conn = c
	close(n.changed)
	n.changed = make(chan struct{})
}

// get returns the newest connection while it is open, waiting for a new
// one (bounded by ctx) when it has ended.
func (n *newestConn) get(ctx context.Context) (*Conn, error) {
	for {
		n.mu.Lock()
		c, changed := n.conn, n.changed
		n.mu.Unlock()
		if c != nil && c.Err() == nil {
			return c, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: no connection to the client: %w", ErrNotConnected, ctx.Err())
		}
	}
}

// linkEvents records a client's connects and disconnects.
type linkEvents struct {
	mu          sync.Mutex
	connects    []time.Time
	conns       []*Conn
	disconnects map[*Conn]time.Time
	causes      map[string]int
}

func (e *linkEvents) connect(_ context.Context, c *Conn) error {
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.connects = append(e.connects, now)
	e.conns = append(e.conns, c)
	return nil
}

func (e *linkEvents) disconnect(c *Conn, err error) {
	now := time.Now()
	cause := "link error (reset, EOF, write failure)"
	switch {
	case errors.Is(err, ErrKeepAliveTimeout):
		cause = "keep-alive timeout"
	case errors.Is(err, ErrClosed):
		cause = "closed by the client"
	case isNormalClose(err):
		cause = "closed by the server"
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.disconnects[c] = now
	e.causes[cause]++
}

// counts returns the number of connects and disconnects so far.
func (e *linkEvents) counts() (connects, disconnects int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.connects), len(e.disconnects)
}

// reconnectTimes returns, for each connection after the first, the time
// from the previous connection's OnDisconnect to its OnConnect. The hooks
// run in different goroutines, so the new OnConnect may come first: such
// a time counts as zero.
func (e *linkEvents) reconnectTimes() []time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []time.Duration
	for i := 1; i < len(e.conns); i++ {
		if down, ok := e.disconnects[e.conns[i-1]]; ok {
			out = append(out, max(e.connects[i].Sub(down), 0))
		}
	}
	slices.Sort(out)
	return out
}

// logCounter is a slog.Handler that counts records by message.
type logCounter struct {
	mu     *sync.Mutex
	counts map[string]int
}

func newLogCounter() logCounter { return logCounter{&sync.Mutex{}, make(map[string]int)} }

func (h logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h logCounter) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h logCounter) WithGroup(string) slog.Handler            { return h }
func (h logCounter) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counts[r.Message]++
	return nil
}

func (h logCounter) get(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.counts[msg]
}

// pauseClock measures the time the test process itself did not run: a
// ticker that should fire every 10 ms, and did not. A call that is late
// because the whole process was starved (another job on the machine) is
// not a hang; the hang check forgives it this time.
type pauseClock struct {
	lost    atomic.Int64 // total time lost, in nanoseconds
	longest atomic.Int64 // the longest single pause
	stop    chan struct{}
	done    chan struct{}
}

const pauseTick = 10 * time.Millisecond

func startPauseClock() *pauseClock {
	pc := &pauseClock{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(pc.done)
		t := time.NewTicker(pauseTick)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-pc.stop:
				return
			case now := <-t.C:
				if gap := now.Sub(last) - pauseTick; gap > pauseTick {
					pc.lost.Add(int64(gap))
					if gap > time.Duration(pc.longest.Load()) {
						pc.longest.Store(int64(gap))
					}
				}
				last = now
			}
		}
	}()
	return pc
}

// now returns the time lost so far.
func (pc *pauseClock) now() time.Duration { return time.Duration(pc.lost.Load()) }

func (pc *pauseClock) Stop() {
	close(pc.stop)
	<-pc.done
}

// Kinds of call outcomes.
const (
	outcomeOK       = "ok"
	outcomeLost     = "connection lost"
	outcomeNotConn  = "not connected"
	outcomeDeadline = "deadline exceeded"
	outcomeOther    = "OTHER"
)

// tally counts the outcomes of one side's calls.
type tally struct {
	name string

	mu         sync.Mutex
	outcomes   map[string]int
	idempotent map[string]int // outcomes of the calls marked idempotent
	slowest    time.Duration
	mismatches int      // successful calls whose result was not what they sent
	idemLost   int      // idempotent calls that failed with ErrConnectionLost before their deadline
	problems   []string // the first few, for the failure message
	nproblems  int
}

func newTally(name string) *tally {
	return &tally{name: name, outcomes: make(map[string]int), idempotent: make(map[string]int)}
}

// classify names the outcome of a call: the allowed kinds, or other.
func classify(err error) string {
	switch {
	case err == nil:
		return outcomeOK
	case errors.Is(err, ErrConnectionLost):
		return outcomeLost
	case errors.Is(err, ErrNotConnected):
		return outcomeNotConn
	case errors.Is(err, context.DeadlineExceeded):
		return outcomeDeadline
	}
	return outcomeOther
}

// record records one call: what it sent, what it got, how long it took;
// paused is how long the process was starved during the call.
func (ta *tally) record(sent, got string, err error, idempotent bool, took, paused time.Duration, beforeDeadline bool) {
	kind := classify(err)
	ta.mu.Lock()
	defer ta.mu.Unlock()
	ta.outcomes[kind]++
	if idempotent {
		ta.idempotent[kind]++
	}
	ta.slowest = max(ta.slowest, took)
	problem := ""
	switch {
	case kind == outcomeOther:
		problem = fmt.Sprintf("error of an unexpected kind: %v", err)
	case err == nil && got != sent:
		ta.mismatches++
		problem = fmt.Sprintf("sent %.40q, got %.40q", sent, got)
	case took > *faultCallTimeout+faultSlack+paused:
		problem = fmt.Sprintf("a call took %v, past its %v deadline, %v of slack and %v the process was starved (%v)",
			took, *faultCallTimeout, faultSlack, paused, err)
	case idempotent && kind == outcomeLost && beforeDeadline:
		ta.idemLost++
		problem = fmt.Sprintf("an idempotent call failed before its deadline: %v", err)
	}
	if problem != "" {
		ta.nproblems++
		if len(ta.problems) < 10 {
			ta.problems = append(ta.problems, problem)
		}
	}
}

func (ta *tally) String() string {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	total := 0
	for _, n := range ta.outcomes {
		total += n
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d calls: ok %d; %s %d, %s %d, %s %d, other %d; slowest %v",
		ta.name, total, ta.outcomes[outcomeOK], outcomeLost, ta.outcomes[outcomeLost],
		outcomeNotConn, ta.outcomes[outcomeNotConn], outcomeDeadline, ta.outcomes[outcomeDeadline],
		ta.outcomes[outcomeOther], ta.slowest.Round(time.Millisecond))
	fmt.Fprintf(&b, "; wrong results %d", ta.mismatches)
	if n := sumMap(ta.idempotent); n > 0 {
		fmt.Fprintf(&b, "\n  of which idempotent: %d calls: ok %d; %s %d, %s %d, %s %d",
			n, ta.idempotent[outcomeOK], outcomeLost, ta.idempotent[outcomeLost],
			outcomeNotConn, ta.idempotent[outcomeNotConn], outcomeDeadline, ta.idempotent[outcomeDeadline])
		fmt.Fprintf(&b, "; connection lost before the deadline %d", ta.idemLost)
	}
	return b.String()
}

func sumMap(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// faultPayload returns the text of call i on one side: unique, and every
// 16th one several KiB long, so that frames span many fragments.
func faultPayload(side string, i int) string {
	s := fmt.Sprintf("%s-%d-%d-", side, *faultSeed, i)
	if i%16 == 0 {
		s += strings.Repeat("abcdefghijklmnopqrstuvwxyz", 40+(i*37)%400)
	}
	return s
}

// faultSleep returns how long the handler of call i sleeps: every 8th
// call 1 to 20 ms.
func faultSleep(i int) int {
	if i%8 != 3 {
		return 0
	}
	return 1000 + (i*7919)%19000
}

// TestFaults runs calls both ways, client to server and server to client,
// through a proxy that cuts, stalls, silences (half-open), delays and
// fragments the link on a seeded schedule. Every call must return by its
// deadline (plus slack) with its own result or an error of an allowed
// kind; a call not marked idempotent must never run twice; idempotent ones
// must not fail with ErrConnectionLost before their deadline; the client
// must reconnect after every drop; and afterwards the server must have no
// connections and the goroutines must be back to their baseline.
//
// The default run is short enough for CI; docs/reliability.md has the full
// run: go test -run TestFaults -v -faults.calls=10000
func TestFaults(t *testing.T) {
	n := *faultCalls
	seed := *faultSeed
	keepAlive := KeepAlive{Interval: 100 * time.Millisecond, Timeout: 200 * time.Millisecond}
	hardTimeout := 2*time.Minute + time.Duration(n)*20*time.Millisecond

	srvRuns, cliRuns := &runCounter{runs: make(map[string]int)}, &runCounter{runs: make(map[string]int)}
	newest := &newestConn{changed: make(chan struct{})}
	var (
		serverMu                   sync.Mutex
		serverOpened, serverClosed int
	)
	srvLog, cliLog := newLogCounter(), newLogCounter()
	srv, u := testServer(t, faultMux(srvRuns), &ServerOptions{
		KeepAlive: keepAlive,
		Logger:    slog.New(srvLog),
		OnConnect: func(_ context.Context, c *Conn) error {
			serverMu.Lock()
			serverOpened++
			serverMu.Unlock()
			newest.set(c)
			return nil
		},
		OnDisconnect: func(*Conn, error) {
			serverMu.Lock()
			serverClosed++
			serverMu.Unlock()
		},
	})
	proxy := testproxy.New(t, hostOf(t, u))
	// Always: writes are split into pieces of up to 1 KiB. On the
	// schedule: cuts, stalls, half-open links and slow periods.
	proxy.Shape(testproxy.ToTarget, testproxy.Shaping{Chunk: 1024})
	proxy.Shape(testproxy.ToClient, testproxy.Shaping{Chunk: 1024})
	plan := testproxy.Plan{
		Seed:  seed,
		Every: 100 * time.Millisecond,
		For:   300 * time.Millisecond,
		Cut:   3, Stall: 2, HalfOpen: 2, Slow: 3,
		Shaping: testproxy.Shaping{Delay: time.Millisecond, Jitter: 4 * time.Millisecond, Chunk: 64, Gap: 200 * time.Microsecond},
	}

	runtime.GC()
	goroutinesBefore := runtime.NumGoroutine()
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)
	heapBefore := mem.HeapAlloc

	events := &linkEvents{disconnects: make(map[*Conn]time.Time), causes: make(map[string]int)}
	cl := testDial(t, "ws://"+proxy.Addr()+"/ws", &DialOptions{
		Methods:          faultMux(cliRuns),
		Logger:           slog.New(cliLog),
		Retry:            RetryOptions{InitialInterval: 10 * time.Millisecond, MaxInterval: 100 * time.Millisecond},
		KeepAlive:        keepAlive,
		HandshakeTimeout: time.Second,
		OnConnect:        events.connect,
		OnDisconnect:     events.disconnect,
	})
	// One fault of each kind first, so that even a short run sees them all;
	// then the plan's.
	opener := []testproxy.Fault{
		{Kind: testproxy.Cut, After: 100 * time.Millisecond},
		{Kind: testproxy.Stall, After: 100 * time.Millisecond, For: 400 * time.Millisecond},
		{Kind: testproxy.HalfOpen, After: 100 * time.Millisecond, For: 400 * time.Millisecond},
		{Kind: testproxy.Slow, After: 100 * time.Millisecond, For: 400 * time.Millisecond, Shaping: plan.Shaping},
	}
	pauses := startPauseClock()
	defer pauses.Stop()
	injector := proxy.Inject(append(opener, plan.Faults(1000)...))
	start := time.Now()

	up, down := newTally("client→server"), newTally("server→client")
	// call makes call i of one side and records it.
	call := func(i int, toClient bool) {
		side, ta := "c2s", up
		if toClient {
			side, ta = "s2c", down
		}
		args := faultArgs{Text: faultPayload(side, i), SleepUS: faultSleep(i)}
		idempotent := !toClient && i%4 == 0
		ctx, cancel := context.WithTimeout(context.Background(), *faultCallTimeout)
		defer cancel()
		deadline, _ := ctx.Deadline()
		if idempotent {
			ctx = Idempotent(ctx)
		}
		callStart, pausedBefore := time.Now(), pauses.now()
		var got string
		var err error
		if toClient {
			var c *Conn
			if c, err = newest.get(ctx); err == nil {
				got, err = Call[string](ctx, c, "fecho", args)
			}
		} else {
			got, err = Call[string](ctx, cl, "fecho", args)
		}
		took := time.Since(callStart)
		ta.record(args.Text, got, err, idempotent, took, pauses.now()-pausedBefore, time.Now().Before(deadline))
		if errors.Is(err, ErrNotConnected) && took < time.Millisecond {
			time.Sleep(5 * time.Millisecond) // as a caller would, rather than spin
		}
	}
	// Each side makes n calls, and more until the opener is over (the
	// first planned fault struck), so that a fast machine sees every kind.
	openerOver := func() bool {
		st := injector.Stats()
		return st.Injected[testproxy.Cut]+st.Injected[testproxy.Stall]+
			st.Injected[testproxy.HalfOpen]+st.Injected[testproxy.Slow] > len(opener)
	}
	var made [2]int // calls made, client to server and server to client
	var wg sync.WaitGroup
	for side, toClient := range []bool{false, true} {
		next := make(chan int)
		wg.Go(func() {
			defer close(next)
			i := 0
			for ; i < n || !openerOver(); i++ {
				next <- i
			}
			made[side] = i
		})
		for range faultWorkers {
			wg.Go(func() {
				for i := range next {
					call(i, toClient)
				}
			})
		}
	}
	finished := make(chan struct{})
	go func() {
		wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(hardTimeout):
		var b strings.Builder
		pprof.Lookup("goroutine").WriteTo(&b, 1)
		injector.Stop()
		t.Fatalf("the run did not end within %v: a call hangs\n%s\n%s\n%s", hardTimeout, up, down, b.String())
	}
	took := time.Since(start)
	faults := injector.Stop()

	// The client reconnected after the last fault: a call each way works.
	// (Stop resets the links a half-open fault silenced: the client may be
	// reconnecting once more.)
	ctx := ctxT(t)
	echoOnce := func(ctx context.Context, c Caller, text string) error {
		got, err := Call[string](ctx, c, "fecho", faultArgs{Text: text})
		if err == nil && got != text {
			err = fmt.Errorf("got %q", got)
		}
		return err
	}
	if err := echoOnce(Idempotent(ctx), cl, "final"); err != nil {
		t.Errorf("a call after the faults stopped: %v", err)
	}
	for try := 0; ; try++ {
		c, err := newest.get(ctx)
		if err == nil {
			err = echoOnce(ctx, c, fmt.Sprintf("final to the client %d", try))
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Errorf("a call to the client after the faults stopped: %v", err)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Every disconnect was followed by a connect. (The hooks of two
	// connections run in different goroutines: wait for them to settle.)
	connects, disconnects := events.counts()
	for deadline := time.Now().Add(5 * time.Second); connects != disconnects+1 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		connects, disconnects = events.counts()
	}
	if connects < 2 || connects != disconnects+1 {
		t.Errorf("client: %d connects, %d disconnects; want several, each disconnect followed by a connect", connects, disconnects)
	}
	events.mu.Lock()
	causes := make([]string, 0, len(events.causes))
	for cause, k := range events.causes {
		causes = append(causes, fmt.Sprintf("%s %d", cause, k))
	}
	events.mu.Unlock()
	slices.Sort(causes)

	// No handler ran twice for a call not marked idempotent.
	retried := 0
	for i := range made[0] {
		if r := srvRuns.get(faultPayload("c2s", i)); r > 1 {
			if i%4 != 0 {
				t.Errorf("call c2s %d, not idempotent, ran %d times on the server", i, r)
			}
			retried++
		}
	}
	for i := range made[1] {
		if r := cliRuns.get(faultPayload("s2c", i)); r > 1 {
			t.Errorf("call s2c %d ran %d times on the client", i, r)
		}
	}
	for _, ta := range []*tally{up, down} {
		if ta.nproblems > 0 {
			t.Errorf("%s: %d problems, the first: %s", ta.name, ta.nproblems, strings.Join(ta.problems, "; "))
		}
	}

	// Afterwards: no connection on the server, goroutines and heap back.
	cl.Close()
	waitConnsDone(t, srv)
	srv.Close()
	proxy.Close()
	serverMu.Lock()
	opened, closed := serverOpened, serverClosed
	serverMu.Unlock()
	if opened != closed {
		t.Errorf("server: %d connections opened, %d closed", opened, closed)
	}
	goroutinesAfter := runtime.NumGoroutine()
	for deadline := time.Now().Add(10 * time.Second); goroutinesAfter > goroutinesBefore && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		goroutinesAfter = runtime.NumGoroutine()
	}
	if goroutinesAfter > goroutinesBefore {
		var b strings.Builder
		pprof.Lookup("goroutine").WriteTo(&b, 1)
		t.Errorf("%d goroutines after the run, %d before:\n%s", goroutinesAfter, goroutinesBefore, b.String())
	}
	srvRuns.runs, cliRuns.runs = nil, nil
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&mem)
	heapAfter := mem.HeapAlloc
	// A loose bound: it catches a leak of a few hundred bytes per call on
	// a full run, and never the heap's normal noise.
	if heapAfter > heapBefore+4<<20 {
		t.Errorf("heap: %d bytes before the run, %d after", heapBefore, heapAfter)
	}

	times := events.reconnectTimes()
	pct := func(p int) time.Duration {
		if len(times) == 0 {
			return 0
		}
		return times[min(len(times)-1, len(times)*p/100)].Round(100 * time.Microsecond)
	}
	t.Logf(`fault run: seed %d, %d calls each way (at least), %d workers each way, %v per call, took %v
faults: cut %d (%d hit a link), stall %d, half-open %d (%d links silenced), slow %d
%s
%s
idempotent calls run more than once on the server: %d
client: %d connects, %d disconnects (%s)
reconnect time, OnDisconnect to the next OnConnect: p50 %v, p99 %v, max %v
server: %d connections opened, %d closed, %d open after the client closed
answers that found no waiting call (late: a call or keep-alive _ping_ past its deadline; or duplicate): to the client %d, to the server %d
goroutines: %d before, %d after; heap: %.1f MiB before, %.1f MiB after
the test process was starved (a 10 ms ticker late) for %v in all, %v at the longest`,
		seed, n, faultWorkers, *faultCallTimeout, took.Round(100*time.Millisecond),
		faults.Injected[testproxy.Cut], faults.Hit[testproxy.Cut], faults.Injected[testproxy.Stall],
		faults.Injected[testproxy.HalfOpen], faults.Links[testproxy.HalfOpen], faults.Injected[testproxy.Slow],
		up, down, retried,
		connects, disconnects, strings.Join(causes, ", "),
		pct(50), pct(99), pct(100),
		opened, closed, len(srv.Conns()),
		cliLog.get("response to no pending call"), srvLog.get("response to no pending call"),
		goroutinesBefore, goroutinesAfter, float64(heapBefore)/(1<<20), float64(heapAfter)/(1<<20),
		pauses.now().Round(time.Millisecond), time.Duration(pauses.longest.Load()).Round(time.Millisecond))
}

// TestStalledReaderWriteTimeout: with keep-alive off on both sides, a link
// that stalls while the server has much to send is found by the write
// timeout alone: the server drops the connection, and its calls, those
// sent and those waiting for room in the full send queue, fail with
// ErrConnectionLost long before their deadlines.
func TestStalledReaderWriteTimeout(t *testing.T) {
	ctx := ctxT(t)
	disconnected := make(chan error, 1)
	srv, u := testServer(t, nil, &ServerOptions{
		KeepAlive:    KeepAlive{Interval: -1},
		WriteTimeout: 200 * time.Millisecond,
		SendQueue:    2,
		OnDisconnect: func(_ *Conn, err error) { sendNoWait(disconnected, err) },
	})
	proxy := testproxy.New(t, hostOf(t, u))
	testDial(t, "ws://"+proxy.Addr()+"/ws", &DialOptions{
		Methods:          utilMux(),
		KeepAlive:        KeepAlive{Interval: -1},
		DisableReconnect: true,
	})
	sc := serverConn(t, srv)
	mustEcho(ctx, t, sc, "before the stall")

	proxy.Freeze() // nothing is read from the server's socket any more
	const calls, deadline = 32, 10 * time.Second
	big := strings.Repeat("x", 512<<10) // 16 MiB in all: more than the sockets buffer
	errs := make(chan error, calls)
	start := time.Now()
	for range calls {
		go func() {
			cctx, cancel := context.WithTimeout(ctx, deadline)
			defer cancel()
			errs <- sc.Call(cctx, "echo", textArgs{big}, nil)
		}()
	}
	// (gorilla hides the socket's error behind its own net.Error.)
	if err := recv(ctx, t, disconnected, "the server's OnDisconnect"); !isTimeout(err) {
		t.Errorf("server OnDisconnect: %v, want a write timeout", err)
	}
	for range calls {
		if err := recv(ctx, t, errs, "a call to return"); !errors.Is(err, ErrConnectionLost) {
			t.Errorf("call on the stalled link: %v, want ErrConnectionLost", err)
		}
	}
	if took := time.Since(start); took >= deadline {
		t.Errorf("the calls took %v, not ended by the write timeout", took)
	}
	proxy.Thaw()
}

func isTimeout(err error) bool {
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}
