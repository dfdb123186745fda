package wsrpc

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsrpc/wsrpc/internal/testproxy"
)

var (
	faultCalls   = flag.Int("faults.calls", 2000, "TestFaults: calls each way per client, at least (docs/reliability.md: 10000)")
	faultClients = flag.Int("faults.clients", 4, "TestFaults: clients at once, each through its own proxy with its own fault schedule")
	faultSeed    = flag.Uint64("faults.seed", 1, "TestFaults: seed of the fault schedules")
	// faultCallTimeout is each call's deadline.
	faultCallTimeout = flag.Duration("faults.timeout", 2*time.Second, "TestFaults: each call's deadline")
)

// Settings of the fault run.
const (
	faultWorkers = 16 // callers on each side of each client
	// faultSlack is how long past its deadline a call may take to return
	// before it counts as hung: generous, for -race on a loaded machine.
	faultSlack = 5 * time.Second
	// faultCloseTimeout bounds the clients' Close at the end.
	faultCloseTimeout = 30 * time.Second
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

// faultMux exposes "fecho", which counts its runs in runs. It first asks
// check whether the call reached the right peer: an error fails the call.
func faultMux(runs *runCounter, check func(ctx context.Context, text string) error) *Mux {
	m := NewMux()
	Register(m, "fecho", func(ctx context.Context, a faultArgs) (string, error) {
		runs.add(a.Text)
		if err := check(ctx, a.Text); err != nil {
			return "", err
		}
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
	once    sync.Once
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

// Stop stops the clock; it is idempotent.
func (pc *pauseClock) Stop() {
	pc.once.Do(func() { close(pc.stop) })
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

// sumTallies adds up tallies of one side, one for each client.
func sumTallies(name string, tallies []*tally) *tally {
	out := newTally(name)
	for _, ta := range tallies {
		ta.mu.Lock()
		for k, v := range ta.outcomes {
			out.outcomes[k] += v
		}
		for k, v := range ta.idempotent {
			out.idempotent[k] += v
		}
		out.slowest = max(out.slowest, ta.slowest)
		out.mismatches += ta.mismatches
		out.idemLost += ta.idemLost
		out.nproblems += ta.nproblems
		ta.mu.Unlock()
	}
	return out
}

// faultPayload returns the text of call i on one side (c2s or s2c) of
// client k: unique, naming the client and the call, and every 16th one
// several KiB long, so that frames span many fragments.
func faultPayload(side string, k, i int) string {
	s := fmt.Sprintf("%s-%d-%d-%d-", side, k, *faultSeed, i)
	if i%16 == 0 {
		s += strings.Repeat("abcdefghijklmnopqrstuvwxyz", 40+(i*37)%400)
	}
	return s
}

// payloadClient returns the client a payload names: its second field.
func payloadClient(text string) string {
	_, rest, _ := strings.Cut(text, "-")
	k, _, _ := strings.Cut(rest, "-")
	return k
}

// faultSleep returns how long the handler of call i sleeps: every 8th
// call 1 to 20 ms.
func faultSleep(i int) int {
	if i%8 != 3 {
		return 0
	}
	return 1000 + (i*7919)%19000
}

// faultClient is one client of the fault run: its own proxy and fault
// schedule, the server's newest connection to it, and its figures.
type faultClient struct {
	k        int
	id       string // its client_id, the last element of the URL path
	seed     uint64 // of its fault schedule
	proxy    *testproxy.Proxy
	injector *testproxy.Injector
	opener   int // faults in its opener
	cl       *Client
	runs     *runCounter // fecho's runs on this client
	newest   *newestConn // the server's newest connection to this client
	events   *linkEvents
	log      logCounter
	up, down *tally
	made     [2]int // calls made, client to server and server to client
	faults   testproxy.Stats
	retried  int // idempotent calls that ran more than once on the server

	// Calls that reached the wrong peer: a call of this client's that the
	// server received on another connection than this client's, and a
	// call for another client that this client received.
	wrongAtServer, wrongAtClient atomic.Int64
	// The server's connections from this client.
	opened, closed atomic.Int64
}

// TestFaults runs several clients at once, each through its own proxy
// that cuts, stalls, silences (half-open), delays and fragments its link
// on a seeded schedule of its own, with calls both ways, client to server
// and server to client. Every call must return by its deadline (plus
// slack) with its own result or an error of an allowed kind; every call
// must reach the peer it was meant for (its payload names the client and
// the call); a call not marked idempotent must never run twice;
// idempotent ones must not fail with ErrConnectionLost before their
// deadline; each client must reconnect after every drop; and afterwards
// the server must have no connections and the goroutines and the heap
// must be back to their baseline.
//
// The default run is short enough for CI; docs/reliability.md has the full
// run: go test -race -run TestFaults -v -faults.calls=10000
func TestFaults(t *testing.T) {
	n, nclients := *faultCalls, *faultClients
	seed := *faultSeed
	if nclients < 1 || nclients > 1000 {
		t.Fatalf("-faults.clients=%d: want 1 to 1000", nclients)
	}
	keepAlive := KeepAlive{Interval: 100 * time.Millisecond, Timeout: 200 * time.Millisecond}
	// The bound of the whole run, against a hang: far more than it takes.
	hardTimeout := 2*time.Minute + time.Duration(n*nclients)*10*time.Millisecond

	clients := make([]*faultClient, nclients)
	for k := range clients {
		clients[k] = &faultClient{
			k:      k,
			id:     strconv.Itoa(k),
			seed:   seed*1000 + uint64(k),
			runs:   &runCounter{runs: make(map[string]int)},
			newest: &newestConn{changed: make(chan struct{})},
			events: &linkEvents{disconnects: make(map[*Conn]time.Time), causes: make(map[string]int)},
			log:    newLogCounter(),
			up:     newTally("client→server"),
			down:   newTally("server→client"),
		}
	}
	// clientOf returns the client that id names, or nil.
	clientOf := func(id string) *faultClient {
		k, err := strconv.Atoi(id)
		if err != nil || k < 0 || k >= nclients || clients[k].id != id {
			return nil
		}
		return clients[k]
	}
	var (
		serverOpened, serverClosed atomic.Int64
		strangers                  atomic.Int64 // connections or calls that name no client
	)
	srvRuns := &runCounter{runs: make(map[string]int)}
	// The server's fecho checks that each call came on the connection of
	// the client its payload names.
	srvMux := faultMux(srvRuns, func(ctx context.Context, text string) error {
		from := ""
		if c := ConnFromContext(ctx); c != nil {
			from = c.PathValue("client_id")
		}
		if want := payloadClient(text); from != want {
			if fc := clientOf(want); fc != nil {
				fc.wrongAtServer.Add(1)
			} else {
				strangers.Add(1)
			}
			return fmt.Errorf("a call of client %s came on client %q's connection", want, from)
		}
		return nil
	})
	srvLog := newLogCounter()
	srv, u := testServer(t, srvMux, &ServerOptions{
		ConnOptions: ConnOptions{
			KeepAlive: keepAlive,
			Logger:    slog.New(srvLog),
			OnConnect: func(_ context.Context, c *Conn) error {
				serverOpened.Add(1)
				if fc := clientOf(c.PathValue("client_id")); fc != nil {
					fc.opened.Add(1)
					fc.newest.set(c)
				} else {
					strangers.Add(1)
				}
				return nil
			},
			OnDisconnect: func(c *Conn, _ error) {
				serverClosed.Add(1)
				if fc := clientOf(c.PathValue("client_id")); fc != nil {
					fc.closed.Add(1)
				}
			},
		},
	})
	// The baseline: before the proxies start, whose goroutines the run's end
	// stops.
	runtime.GC()
	goroutinesBefore := runtime.NumGoroutine()
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)
	heapBefore := mem.HeapAlloc

	plan := testproxy.Plan{
		Every: 100 * time.Millisecond,
		For:   300 * time.Millisecond,
		Cut:   3, Stall: 2, HalfOpen: 2, Slow: 3,
		Shaping: testproxy.Shaping{Delay: time.Millisecond, Jitter: 4 * time.Millisecond, Chunk: 64, Gap: 200 * time.Microsecond},
	}
	for _, fc := range clients {
		fc.proxy = testproxy.New(t, hostOf(t, u))
		// Always: writes are split into pieces of up to 1 KiB. On the
		// schedule: cuts, stalls, half-open links and slow periods.
		fc.proxy.Shape(testproxy.ToTarget, testproxy.Shaping{Chunk: 1024})
		fc.proxy.Shape(testproxy.ToClient, testproxy.Shaping{Chunk: 1024})
	}

	for _, fc := range clients {
		// The client's fecho checks that each call is meant for it.
		mux := faultMux(fc.runs, func(_ context.Context, text string) error {
			if want := payloadClient(text); want != fc.id {
				fc.wrongAtClient.Add(1)
				return fmt.Errorf("a call for client %s reached client %s", want, fc.id)
			}
			return nil
		})
		fc.cl = testDial(t, "ws://"+fc.proxy.Addr()+"/ws/"+fc.id, &DialOptions{
			Methods: mux,
			ConnOptions: ConnOptions{
				Logger:       slog.New(fc.log),
				KeepAlive:    keepAlive,
				OnConnect:    fc.events.connect,
				OnDisconnect: fc.events.disconnect,
			},
			Retry:            RetryOptions{InitialInterval: 10 * time.Millisecond, MaxInterval: 100 * time.Millisecond},
			HandshakeTimeout: time.Second,
		})
	}
	pauses := startPauseClock()
	defer pauses.Stop()
	for _, fc := range clients {
		// One fault of each kind first, so that even a short run sees them
		// all; then the plan's, from the client's own seed. The clients'
		// first faults are 20 ms apart.
		opener := []testproxy.Fault{
			{Kind: testproxy.Cut, After: 100*time.Millisecond + time.Duration(fc.k%10)*20*time.Millisecond},
			{Kind: testproxy.Stall, After: 100 * time.Millisecond, For: 400 * time.Millisecond},
			{Kind: testproxy.HalfOpen, After: 100 * time.Millisecond, For: 400 * time.Millisecond},
			{Kind: testproxy.Slow, After: 100 * time.Millisecond, For: 400 * time.Millisecond, Shaping: plan.Shaping},
		}
		fc.opener = len(opener)
		pl := plan
		pl.Seed = fc.seed
		fc.injector = fc.proxy.Inject(append(opener, pl.Faults(1000)...))
	}
	start := time.Now()

	// call makes call i of one side of a client and records it.
	call := func(fc *faultClient, i int, toClient bool) {
		side, ta := "c2s", fc.up
		if toClient {
			side, ta = "s2c", fc.down
		}
		args := faultArgs{Text: faultPayload(side, fc.k, i), SleepUS: faultSleep(i)}
		idempotent := !toClient && i%4 == 0
		ctx, cancel := context.WithTimeout(context.Background(), *faultCallTimeout)
		defer cancel()
		deadline, _ := ctx.Deadline()
		callStart, pausedBefore := time.Now(), pauses.now()
		var got string
		var err error
		if toClient {
			var c *Conn
			if c, err = fc.newest.get(ctx); err == nil {
				got, err = Call[string](ctx, c, "fecho", args)
			}
		} else {
			err = fc.cl.CallWith(ctx, "fecho", args, &got, CallOptions{Idempotent: idempotent})
		}
		took := time.Since(callStart)
		ta.record(args.Text, got, err, idempotent, took, pauses.now()-pausedBefore, time.Now().Before(deadline))
		if errors.Is(err, ErrNotConnected) && took < time.Millisecond {
			time.Sleep(5 * time.Millisecond) // as a caller would, rather than spin
		}
	}
	// Each side of each client makes n calls, and more until the client's
	// opener is over (the first planned fault struck), so that a fast
	// machine sees every kind.
	openerOver := func(fc *faultClient) bool {
		st := fc.injector.Stats()
		return st.Injected[testproxy.Cut]+st.Injected[testproxy.Stall]+
			st.Injected[testproxy.HalfOpen]+st.Injected[testproxy.Slow] > fc.opener
	}
	var wg sync.WaitGroup
	for _, fc := range clients {
		for side, toClient := range []bool{false, true} {
			next := make(chan int)
			wg.Go(func() {
				defer close(next)
				i := 0
				for ; i < n || !openerOver(fc); i++ {
					next <- i
				}
				fc.made[side] = i
			})
			for range faultWorkers {
				wg.Go(func() {
					for i := range next {
						call(fc, i, toClient)
					}
				})
			}
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
		for _, fc := range clients {
			fc.injector.Stop()
			fmt.Fprintf(&b, "client %d:\n%s\n%s\n", fc.k, fc.up, fc.down)
		}
		pprof.Lookup("goroutine").WriteTo(&b, 1)
		t.Fatalf("the run did not end within %v: a call hangs\n%s", hardTimeout, b.String())
	}
	took := time.Since(start)
	for _, fc := range clients {
		fc.faults = fc.injector.Stop()
	}

	// Each client reconnected after its last fault: a call each way works.
	// (Stop resets the links a half-open fault silenced: a client may be
	// reconnecting once more.)
	ctx := ctxT(t)
	checkEcho := func(text, got string, err error) error {
		if err == nil && got != text {
			err = fmt.Errorf("got %q", got)
		}
		return err
	}
	echoOnce := func(ctx context.Context, c Caller, text string) error {
		got, err := Call[string](ctx, c, "fecho", faultArgs{Text: text})
		return checkEcho(text, got, err)
	}
	for _, fc := range clients {
		text := fmt.Sprintf("c2s-%d-final", fc.k)
		var got string
		err := fc.cl.CallWith(ctx, "fecho", faultArgs{Text: text}, &got, CallOptions{Idempotent: true})
		if err = checkEcho(text, got, err); err != nil {
			t.Errorf("client %d: a call after the faults stopped: %v", fc.k, err)
		}
		for try := 0; ; try++ {
			c, err := fc.newest.get(ctx)
			if err == nil {
				err = echoOnce(ctx, c, fmt.Sprintf("s2c-%d-final-%d", fc.k, try))
			}
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Errorf("client %d: a call to the client after the faults stopped: %v", fc.k, err)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Every disconnect was followed by a connect. (The hooks of two
	// connections run in different goroutines: wait for them to settle;
	// the bound is against a hang, generous for -race on a loaded machine.)
	deadline := time.Now().Add(time.Minute)
	for _, fc := range clients {
		connects, disconnects := fc.events.counts()
		for connects != disconnects+1 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
			connects, disconnects = fc.events.counts()
		}
		if connects < 2 || connects != disconnects+1 {
			t.Errorf("client %d: %d connects, %d disconnects; want several, each disconnect followed by a connect", fc.k, connects, disconnects)
		}
	}

	// No handler ran twice for a call not marked idempotent, and every
	// call reached the peer it was meant for.
	for _, fc := range clients {
		for i := range fc.made[0] {
			if r := srvRuns.get(faultPayload("c2s", fc.k, i)); r > 1 {
				if i%4 != 0 {
					t.Errorf("client %d: call c2s %d, not idempotent, ran %d times on the server", fc.k, i, r)
				}
				fc.retried++
			}
		}
		for i := range fc.made[1] {
			if r := fc.runs.get(faultPayload("s2c", fc.k, i)); r > 1 {
				t.Errorf("client %d: call s2c %d ran %d times on the client", fc.k, i, r)
			}
		}
		for _, ta := range []*tally{fc.up, fc.down} {
			if ta.nproblems > 0 {
				t.Errorf("client %d: %s: %d problems, the first: %s", fc.k, ta.name, ta.nproblems, strings.Join(ta.problems, "; "))
			}
		}
		if s, c := fc.wrongAtServer.Load(), fc.wrongAtClient.Load(); s+c > 0 {
			t.Errorf("client %d: calls that reached the wrong peer: %d of its own on another client's connection, %d for another client on its own", fc.k, s, c)
		}
	}
	if k := strangers.Load(); k > 0 {
		t.Errorf("the server saw %d connections or calls that name no client", k)
	}

	// The figures of the links, before the clients close.
	type linkFigures struct {
		connects, disconnects int
		causes                map[string]int
		times                 []time.Duration
	}
	links := make([]linkFigures, nclients)
	for k, fc := range clients {
		lf := &links[k]
		lf.connects, lf.disconnects = fc.events.counts()
		lf.times = fc.events.reconnectTimes()
		fc.events.mu.Lock()
		lf.causes = maps.Clone(fc.events.causes)
		fc.events.mu.Unlock()
	}

	// Afterwards: no connection on the server, goroutines and heap back.
	// The clients close at once, and closing must not hang either.
	var closing sync.WaitGroup
	for _, fc := range clients {
		closing.Go(func() { fc.cl.Close() })
	}
	closed := make(chan struct{})
	go func() {
		closing.Wait()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(faultCloseTimeout):
		var b strings.Builder
		pprof.Lookup("goroutine").WriteTo(&b, 1)
		t.Fatalf("the clients did not close within %v\n%s", faultCloseTimeout, b.String())
	}
	waitConnsDone(t, srv)
	openAfter := len(srv.Conns())
	srv.Close()
	for _, fc := range clients {
		fc.proxy.Close()
	}
	pauses.Stop()
	if o, c := serverOpened.Load(), serverClosed.Load(); o != c {
		t.Errorf("server: %d connections opened, %d closed", o, c)
	}
	goroutinesAfter := runtime.NumGoroutine()
	for deadline := time.Now().Add(time.Minute); goroutinesAfter > goroutinesBefore && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		goroutinesAfter = runtime.NumGoroutine()
	}
	if goroutinesAfter > goroutinesBefore {
		var b strings.Builder
		pprof.Lookup("goroutine").WriteTo(&b, 1)
		t.Errorf("%d goroutines after the run, %d before:\n%s", goroutinesAfter, goroutinesBefore, b.String())
	}
	// Drop what the test itself holds: the run counts and the ended
	// connections.
	srvRuns.runs = nil
	for _, fc := range clients {
		fc.runs.runs = nil
		fc.events.mu.Lock()
		fc.events.conns, fc.events.disconnects = nil, nil
		fc.events.mu.Unlock()
		fc.newest.set(nil)
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&mem)
	heapAfter := mem.HeapAlloc
	// A loose bound: it catches a leak of a few hundred bytes per call on
	// a full run, and never the heap's normal noise.
	if heapAfter > heapBefore+4<<20 {
		t.Errorf("heap: %d bytes before the run, %d after", heapBefore, heapAfter)
	}

	// The report: each client, then all of them.
	pct := func(times []time.Duration, p int) time.Duration {
		if len(times) == 0 {
			return 0
		}
		return times[min(len(times)-1, len(times)*p/100)].Round(100 * time.Microsecond)
	}
	faultLine := func(st testproxy.Stats) string {
		return fmt.Sprintf("faults: cut %d (%d hit a link), stall %d, half-open %d (%d links silenced), slow %d",
			st.Injected[testproxy.Cut], st.Hit[testproxy.Cut], st.Injected[testproxy.Stall],
			st.Injected[testproxy.HalfOpen], st.Links[testproxy.HalfOpen], st.Injected[testproxy.Slow])
	}
	causeList := func(causes map[string]int) string {
		out := make([]string, 0, len(causes))
		for cause, k := range causes {
			out = append(out, fmt.Sprintf("%s %d", cause, k))
		}
		slices.Sort(out)
		return strings.Join(out, ", ")
	}
	indent := func(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }
	var (
		b                                  strings.Builder
		all                                = testproxy.Stats{Injected: map[testproxy.FaultKind]int{}, Hit: map[testproxy.FaultKind]int{}, Links: map[testproxy.FaultKind]int{}}
		ups, downs                         []*tally
		allTimes                           []time.Duration
		allCauses                          = map[string]int{}
		allConnects, allDisconnects        int
		allRetried, allLateToClient        int
		allWrongAtServer, allWrongAtClient int64
	)
	clientsAtOnce := fmt.Sprintf("%d clients at once", nclients)
	if nclients == 1 {
		clientsAtOnce = "1 client"
	}
	fmt.Fprintf(&b, "fault run: seed %d, %s, each through its own proxy with its own fault schedule (seed %d×1000+client); %d calls each way per client (at least), %d workers each way per client, %v per call, took %v\n",
		seed, clientsAtOnce, seed, n, faultWorkers, *faultCallTimeout, took.Round(100*time.Millisecond))
	for _, fc := range clients {
		connects, disconnects, times := links[fc.k].connects, links[fc.k].disconnects, links[fc.k].times
		causes := causeList(links[fc.k].causes)
		for cause, k := range links[fc.k].causes {
			allCauses[cause] += k
		}
		late := fc.log.get("response to no pending call")
		fmt.Fprintf(&b, "client %d:\n", fc.k)
		fmt.Fprintf(&b, "  %s\n%s\n%s\n", faultLine(fc.faults), indent(fc.up.String()), indent(fc.down.String()))
		fmt.Fprintf(&b, "  idempotent calls run more than once on the server: %d; calls that reached the wrong peer: %d\n",
			fc.retried, fc.wrongAtServer.Load()+fc.wrongAtClient.Load())
		fmt.Fprintf(&b, "  %d connects, %d disconnects (%s); reconnect time p50 %v, p99 %v, max %v\n",
			connects, disconnects, causes, pct(times, 50), pct(times, 99), pct(times, 100))
		fmt.Fprintf(&b, "  server: %d connections opened, %d closed; answers that found no waiting call, to the client: %d\n",
			fc.opened.Load(), fc.closed.Load(), late)
		for kind, v := range fc.faults.Injected {
			all.Injected[kind] += v
		}
		for kind, v := range fc.faults.Hit {
			all.Hit[kind] += v
		}
		for kind, v := range fc.faults.Links {
			all.Links[kind] += v
		}
		ups, downs = append(ups, fc.up), append(downs, fc.down)
		allTimes = append(allTimes, times...)
		allConnects, allDisconnects = allConnects+connects, allDisconnects+disconnects
		allRetried += fc.retried
		allLateToClient += late
		allWrongAtServer += fc.wrongAtServer.Load()
		allWrongAtClient += fc.wrongAtClient.Load()
	}
	slices.Sort(allTimes)
	fmt.Fprintf(&b, "all %d clients:\n", nclients)
	fmt.Fprintf(&b, "  %s\n%s\n%s\n", faultLine(all), indent(sumTallies("client→server", ups).String()), indent(sumTallies("server→client", downs).String()))
	fmt.Fprintf(&b, "  idempotent calls run more than once on the server: %d\n", allRetried)
	fmt.Fprintf(&b, "  calls that reached the wrong peer: on the server, from another client's connection %d; on a client, meant for another %d\n",
		allWrongAtServer, allWrongAtClient)
	fmt.Fprintf(&b, "  %d connects, %d disconnects (%s)\n", allConnects, allDisconnects, causeList(allCauses))
	fmt.Fprintf(&b, "  reconnect time, OnDisconnect to the next OnConnect: p50 %v, p99 %v, max %v\n",
		pct(allTimes, 50), pct(allTimes, 99), pct(allTimes, 100))
	fmt.Fprintf(&b, "server: %d connections opened, %d closed, %d open after the clients closed\n",
		serverOpened.Load(), serverClosed.Load(), openAfter)
	fmt.Fprintf(&b, "answers that found no waiting call (late: a call or keep-alive _ping_ past its deadline; or duplicate): to the clients %d, to the server %d\n",
		allLateToClient, srvLog.get("response to no pending call"))
	fmt.Fprintf(&b, "goroutines: %d before, %d after; heap: %.1f MiB before, %.1f MiB after\n",
		goroutinesBefore, goroutinesAfter, float64(heapBefore)/(1<<20), float64(heapAfter)/(1<<20))
	fmt.Fprintf(&b, "the test process was starved (a 10 ms ticker late) for %v in all, %v at the longest",
		pauses.now().Round(time.Millisecond), time.Duration(pauses.longest.Load()).Round(time.Millisecond))
	t.Log(b.String())
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
		ConnOptions: ConnOptions{
			KeepAlive:    KeepAlive{Interval: -1},
			WriteTimeout: 200 * time.Millisecond,
			SendQueue:    2,
			OnDisconnect: func(_ *Conn, err error) { sendNoWait(disconnected, err) },
		},
	})
	proxy := testproxy.New(t, hostOf(t, u))
	testDial(t, "ws://"+proxy.Addr()+"/ws", &DialOptions{
		Methods: utilMux(),
		ConnOptions: ConnOptions{
			KeepAlive: KeepAlive{Interval: -1},
		},
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
