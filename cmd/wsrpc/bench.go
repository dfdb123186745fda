package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/bits"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/wsrpc/wsrpc"
)

const benchHelp = `Usage: wsrpc bench [flags] URL

Drive the server at URL with pipelined calls from wsrpc clients and report
throughput and latency. Each of --conns connections keeps --inflight calls
outstanding: METHOD(text=T), where T is --payload bytes that differ from
call to call. An answer that is not T counts as an error.

Calls that end during --warmup are not counted, nor are their latencies.
At the end of --duration no new calls start; those still outstanding get
5 s to finish, after which they count as errors. A progress line goes to
stderr about once a second; the results go to stdout as a table, or with
--json as one JSON line (the keys of the project's loadgen).

Flags:
  --conns N        connections, each its own client (default 1)
  --inflight N     outstanding calls per connection (default 1)
  --payload N      bytes of the text argument (default 16)
  --duration D     measurement window (default 5s)
  --warmup D       calls before the window, not counted (default 1s)
  --method M       the method to call (default echo)
  --header K:V     add the header K to the upgrade requests (repeatable)
  --json           print one JSON line instead of the table

Exit status: 0 when every call succeeded; 1 when calls failed or answered
wrongly, or none completed; 2 for bad usage, a server that cannot be
reached or refuses the connection, or an interruption.

Examples:
  wsrpc bench ws://127.0.0.1:9000/ws
  wsrpc bench ws://127.0.0.1:9000/ws --conns 64 --inflight 8 --duration 10s
  wsrpc bench ws://127.0.0.1:9000/ws --payload 16384 --json
`

const (
	benchDrain       = 5 * time.Second  // how long calls may run past the window
	benchDialTimeout = 10 * time.Second // bounds connecting all the clients
	benchDialers     = 8                // clients connecting at once
	benchMaxSlots    = 1 << 16          // bound on conns × inflight
	benchMaxErrLogs  = 5                // call errors printed to stderr
	benchProgress    = time.Second      // interval of the progress line
)

// benchFlags are the flags of wsrpc bench.
type benchFlags struct {
	conns, inflight, payload int
	duration, warmup         time.Duration
	method                   string
	header                   http.Header
	json                     bool
}

func (f *benchFlags) flagSet() *flag.FlagSet {
	fs := newFlagSet("bench")
	fs.IntVar(&f.conns, "conns", 1, "")
	fs.IntVar(&f.inflight, "inflight", 1, "")
	fs.IntVar(&f.payload, "payload", 16, "")
	durationVar(fs, &f.duration, "duration", 5*time.Second)
	durationVar(fs, &f.warmup, "warmup", time.Second)
	fs.StringVar(&f.method, "method", "echo", "")
	f.header = make(http.Header)
	fs.Var(headerFlag(f.header), "header", "")
	fs.BoolVar(&f.json, "json", false, "")
	return fs
}

// check reports the first invalid flag value.
func (f *benchFlags) check() error {
	switch {
	case f.conns < 1, f.inflight < 1, f.payload < 1:
		return errors.New("--conns, --inflight and --payload must be at least 1")
	case f.conns > benchMaxSlots, f.inflight > benchMaxSlots, f.conns*f.inflight > benchMaxSlots:
		return fmt.Errorf("--conns × --inflight must be at most %d", benchMaxSlots)
	case f.payload > wsrpc.DefaultMaxMessageSize:
		return fmt.Errorf("--payload must be at most %d", wsrpc.DefaultMaxMessageSize)
	case f.duration <= 0, f.warmup < 0:
		return errors.New("--duration must be positive and --warmup not negative")
	case f.method == "":
		return errors.New("--method must not be empty")
	}
	return nil
}

func runBench(ctx context.Context, args []string, std stdio) int {
	var f benchFlags
	pos, code, ok := parseArgs(f.flagSet(), args, benchHelp, std)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return usageError(std, "bench", "want one URL")
	}
	if err := f.check(); err != nil {
		return usageError(std, "bench", err.Error())
	}
	url := pos[0]
	if !strings.Contains(url, "://") {
		url = "ws://" + url
	}

	clients, err := dialBench(ctx, url, &f)
	if err != nil {
		return callFailure(ctx, std, benchDialTimeout, err)
	}
	defer closeAll(clients)

	res := runLoad(ctx, clients, &f, newConsole(std.err))
	if ctx.Err() != nil {
		return failure(std, errors.New("bench: interrupted"))
	}
	res.print(std.out, url, &f)
	switch {
	case res.errors > 0:
		fmt.Fprintf(std.err, "wsrpc: bench: %d of %d calls failed\n", res.errors, res.errors+res.total)
		return exitRemote
	case res.calls == 0:
		fmt.Fprintln(std.err, "wsrpc: bench: no call completed in the window")
		return exitRemote
	}
	return exitOK
}

// dialBench connects f.conns clients to url, a few at a time.
func dialBench(ctx context.Context, url string, f *benchFlags) ([]*wsrpc.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, benchDialTimeout)
	defer cancel()
	opts := &wsrpc.DialOptions{
		Header:           f.header,
		Retry:            wsrpc.RetryOptions{MaxTries: dialTries},
		DisableReconnect: true,
		ConnOptions: wsrpc.ConnOptions{
			Logger:      slog.New(slog.DiscardHandler),
			CallTimeout: 10 * time.Second, // unused: every call has a deadline
			KeepAlive:   wsrpc.KeepAlive{Interval: -1},
			// Room for the answer and its envelope.
			MaxMessageSize: int64(max(wsrpc.DefaultMaxMessageSize, f.payload+64<<10)),
		},
	}
	clients, err := dialMany(ctx, f.conns, benchDialers, func(ctx context.Context) (*wsrpc.Client, error) {
		return wsrpc.Dial(ctx, url, opts)
	}, nil)
	if err != nil {
		closeAll(clients)
		return nil, err
	}
	return clients, nil
}

// dialMany makes n clients with dial, parallel at a time, calling
// progress (if not nil) once a second with the number made so far. On the
// first failure it stops and returns the clients it made and that error.
func dialMany(ctx context.Context, n, parallel int, dial func(context.Context) (*wsrpc.Client, error),
	progress func(done int)) ([]*wsrpc.Client, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	clients := make([]*wsrpc.Client, n)
	var (
		next, done atomic.Int64
		mu         sync.Mutex
		first      error
	)
	var wg sync.WaitGroup
	for range min(parallel, n) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				c, err := dial(ctx)
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					cancel() // one failure is enough: stop the others
					return
				}
				clients[i] = c
				done.Add(1)
			}
		})
	}
	if progress != nil {
		finished := make(chan struct{})
		var pwg sync.WaitGroup
		pwg.Go(func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-finished:
					return
				case <-t.C:
					progress(int(done.Load()))
				}
			}
		})
		defer pwg.Wait()
		defer close(finished)
	}
	wg.Wait()

	made := clients[:0:0]
	for _, c := range clients {
		if c != nil {
			made = append(made, c)
		}
	}
	if first == nil && len(made) < n {
		first = ctx.Err() // canceled before all were made
	}
	return made, first
}

// closeAll closes clients, several at a time.
func closeAll(clients []*wsrpc.Client) {
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range min(64, len(clients)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(clients); i = int(next.Add(1) - 1) {
				clients[i].Close()
			}
		})
	}
	wg.Wait()
}

// benchResult is the outcome of a run.
type benchResult struct {
	calls  uint64 // completed in the window
	total  uint64 // completed at any time, for the error ratio
	errors uint64 // failed or answered wrongly, at any time
	hist   histogram
}

// slot is one goroutine keeping one call outstanding. Only its goroutine
// writes to it, except the counters the progress line reads.
type slot struct {
	hist   histogram
	calls  uint64
	total  uint64
	errors uint64
	done   atomic.Uint64 // completed calls, for the progress line (every 64th)
	failed atomic.Uint64 // errors, for the progress line
	_      [64]byte      // keep other slots' counters off this cache line
}

// loadRun is the shared, read-only state of a run.
type loadRun struct {
	f        *benchFlags
	t0       time.Time
	winStart time.Duration // since t0
	winEnd   time.Duration
	deadline time.Time // of every call
	console  *console
	errLogs  atomic.Int32
}

// runLoad keeps f.inflight calls outstanding on each client for the
// warmup and the window, then waits for the outstanding calls (at most
// benchDrain) and merges what every slot measured.
func runLoad(ctx context.Context, clients []*wsrpc.Client, f *benchFlags, con *console) benchResult {
	r := &loadRun{f: f, console: con, t0: time.Now(), winStart: f.warmup, winEnd: f.warmup + f.duration}
	r.deadline = r.t0.Add(r.winEnd + benchDrain)
	slots := make([]slot, len(clients)*f.inflight)
	var wg sync.WaitGroup
	for i := range slots {
		c := clients[i/f.inflight].Conn()
		wg.Go(func() { r.loop(ctx, c, uint64(i), uint64(len(slots)), &slots[i]) })
	}
	finished := make(chan struct{})
	var pwg sync.WaitGroup
	pwg.Go(func() { r.progress(slots, finished) })
	wg.Wait()
	close(finished)
	pwg.Wait()

	var res benchResult
	for i := range slots {
		s := &slots[i]
		res.calls += s.calls
		res.total += s.total
		res.errors += s.errors
		res.hist.merge(&s.hist)
	}
	return res
}

// loop is one slot: it calls, checks the answer and records the latency,
// until the window ends. Call ids are first + k·stride, unique in the run.
func (r *loadRun) loop(ctx context.Context, c *wsrpc.Conn, first, stride uint64, s *slot) {
	if c == nil { // the client lost its connection already
		s.errors++
		s.failed.Store(s.errors)
		r.logErr(errors.New("not connected"))
		return
	}
	// A context of its own, so that no two slots wait on one channel.
	ctx, cancel := context.WithDeadline(ctx, r.deadline)
	defer cancel()

	// args is {"text":"T"} and want is "T", as JSON; T is the call id in
	// hex followed by letters. Both are updated in place for each call.
	n := r.f.payload
	args := make([]byte, 0, n+11)
	args = append(args, `{"text":"`...)
	text := len(args)
	for i := range n {
		args = append(args, 'a'+byte(i%26))
	}
	args = append(args, `"}`...)
	want := args[text-1 : text+n+1]
	var result json.RawMessage

	for id := first; ; id += stride {
		start := time.Since(r.t0)
		if start >= r.winEnd {
			return
		}
		putHex(args[text:text+n], id)
		err := c.Call(ctx, r.f.method, json.RawMessage(args), &result)
		end := time.Since(r.t0)
		if err == nil && !bytes.Equal(result, want) && !sameString(result, want) {
			err = fmt.Errorf("call %q: wrong answer %.64s, want %.64s", r.f.method, result, want)
		}
		if err != nil {
			s.errors++
			s.failed.Store(s.errors)
			r.logErr(err)
			select {
			case <-c.Done(): // no further call can succeed
				return
			case <-ctx.Done():
				return
			default:
				continue
			}
		}
		if s.total++; s.total%64 == 0 {
			s.done.Store(s.total) // an atomic store is a barrier: not every call
		}
		if end >= r.winStart && end < r.winEnd {
			s.calls++
			s.hist.record(uint64(end - start))
		}
	}
}

// putHex writes id in hex at the start of text (its last len(text) digits
// if text is shorter than 16 bytes).
func putHex(text []byte, id uint64) {
	const digits = "0123456789abcdef"
	for i := min(16, len(text)) - 1; i >= 0; i-- {
		text[i] = digits[id&15]
		id >>= 4
	}
}

// sameString reports whether the JSON strings a and b decode to the same
// text, for answers that escape characters the request did not.
func sameString(a, b []byte) bool {
	var sa, sb string
	return json.Unmarshal(a, &sa) == nil && json.Unmarshal(b, &sb) == nil && sa == sb
}

// logErr prints the first few call errors.
func (r *loadRun) logErr(err error) {
	if r.errLogs.Add(1) <= benchMaxErrLogs {
		r.console.printf("%v\n", err) // the library's "wsrpc: call ..."
	}
}

// progress shows calls/s and errors about once a second until finished.
func (r *loadRun) progress(slots []slot, finished <-chan struct{}) {
	t := time.NewTicker(benchProgress)
	defer t.Stop()
	var last uint64
	lastAt := time.Now()
	for {
		select {
		case <-finished:
			r.console.done()
			return
		case now := <-t.C:
			var done, failed uint64
			for i := range slots {
				done += slots[i].done.Load()
				failed += slots[i].failed.Load()
			}
			rate := float64(done-last) / now.Sub(lastAt).Seconds()
			last, lastAt = done, now
			phase := "window"
			elapsed := now.Sub(r.t0)
			switch {
			case elapsed < r.winStart:
				phase = "warmup"
			case elapsed >= r.winEnd:
				phase = "drain"
			}
			r.console.status(fmt.Sprintf("bench: %5.1fs %-6s %10.0f calls/s  %d calls  %d errors",
				elapsed.Seconds(), phase, rate, done, failed))
		}
	}
}

// print writes the results to w, as a table or a JSON line.
func (res *benchResult) print(w io.Writer, url string, f *benchFlags) {
	secs := f.duration.Seconds()
	h := &res.hist
	us := func(ns uint64) float64 { return round1(float64(ns) / 1e3) }
	p50, p90, p99 := us(h.quantile(0.50)), us(h.quantile(0.90)), us(h.quantile(0.99))
	rate := round1(float64(res.calls) / secs)
	if f.json {
		out, _ := json.Marshal(struct {
			URL         string  `json:"url"`
			Method      string  `json:"method"`
			Conns       int     `json:"conns"`
			Inflight    int     `json:"inflight"`
			Payload     int     `json:"payload"`
			Calls       uint64  `json:"calls"`
			Errors      uint64  `json:"errors"`
			Secs        float64 `json:"secs"`
			CallsPerSec float64 `json:"calls_per_sec"`
			P50         float64 `json:"p50_us"`
			P90         float64 `json:"p90_us"`
			P99         float64 `json:"p99_us"`
			Max         float64 `json:"max_us"`
		}{url, f.method, f.conns, f.inflight, f.payload, res.calls, res.errors, secs, rate,
			p50, p90, p99, us(h.max)})
		fmt.Fprintf(w, "%s\n", out)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "conns\tinflight\tpayload\tduration\tcalls\tcalls/s\tp50_us\tp90_us\tp99_us\tmax_us\terrors\t")
	fmt.Fprintf(tw, "%d\t%d\t%d\t%v\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t\n", f.conns, f.inflight,
		f.payload, f.duration, res.calls, rate, p50, p90, p99, us(h.max), res.errors)
	tw.Flush()
}

func round1(x float64) float64 { return math.Round(x*10) / 10 }

// console writes progress and messages to stderr: on a terminal the
// progress line is rewritten in place, elsewhere each is a line of its own.
type console struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	shown bool // a progress line is on the terminal's last line
}

func newConsole(w io.Writer) *console {
	c := &console{w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			c.tty = true
		}
	}
	return c
}

// status shows the progress line s.
func (c *console) status(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tty {
		fmt.Fprintf(c.w, "\r\x1b[K%s", s)
		c.shown = true
		return
	}
	fmt.Fprintln(c.w, s)
}

// printf prints a message, above the progress line on a terminal.
func (c *console) printf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shown {
		io.WriteString(c.w, "\r\x1b[K")
		c.shown = false
	}
	fmt.Fprintf(c.w, format, args...)
}

// done ends the progress line.
func (c *console) done() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shown {
		io.WriteString(c.w, "\n")
		c.shown = false
	}
}

// A histogram counts values (latencies in ns) in log-linear buckets:
// exact below 2^histBits, then 2^(histBits-1) buckets per power of two, so
// a bucket's midpoint is within 1/2^histBits (0.8%) of every value in it.
// It grows to the largest bucket used, at most histBuckets.
type histogram struct {
	counts []uint64
	n      uint64
	max    uint64
}

const (
	histBits    = 7
	histMaxVal  = 1<<40 - 1 // about 18 minutes in ns; larger values count here
	histBuckets = (40-histBits+1)<<(histBits-1) + 1<<(histBits-1)
)

// histIndex is the bucket of v.
func histIndex(v uint64) int {
	if v < 1<<histBits {
		return int(v)
	}
	k := bits.Len64(v) - histBits // v>>k is in [2^(histBits-1), 2^histBits)
	return k<<(histBits-1) + int(v>>k)
}

// histMid is the midpoint of bucket i.
func histMid(i int) uint64 {
	if i < 1<<histBits {
		return uint64(i)
	}
	k := i>>(histBits-1) - 1
	low := uint64(i-k<<(histBits-1)) << k
	return low + 1<<k/2
}

func (h *histogram) record(v uint64) {
	v = min(v, histMaxVal)
	i := histIndex(v)
	if i >= len(h.counts) {
		h.grow(i + 1)
	}
	h.counts[i]++
	h.n++
	h.max = max(h.max, v)
}

func (h *histogram) grow(n int) {
	c := make([]uint64, max(n, 2*len(h.counts), 1<<histBits))
	c = c[:min(len(c), histBuckets)]
	copy(c, h.counts)
	h.counts = c
}

func (h *histogram) merge(o *histogram) {
	if len(o.counts) > len(h.counts) {
		h.grow(len(o.counts))
	}
	for i, n := range o.counts {
		h.counts[i] += n
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the value at quantile q (0 < q <= 1): the midpoint of
// its bucket, never more than the largest value recorded. It is 0 when the
// histogram is empty.
func (h *histogram) quantile(q float64) uint64 {
	if h.n == 0 {
		return 0
	}
	rank := max(1, uint64(math.Ceil(q*float64(h.n))))
	if rank >= h.n {
		return h.max
	}
	var seen uint64
	for i, n := range h.counts {
		if seen += n; seen >= rank {
			return min(histMid(i), h.max)
		}
	}
	return h.max
}
