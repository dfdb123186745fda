package testproxy

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"sync"
	"time"
)

// FaultKind is a kind of fault that an [Injector] injects into a proxy.
type FaultKind int

const (
	// Cut resets every current connection (CutAll).
	Cut FaultKind = iota + 1
	// Stall freezes the proxy (Freeze) for the fault's duration, then
	// thaws it: a partition that passes no data and no FIN, on current
	// and new connections alike. The held bytes are delivered after.
	Stall
	// HalfOpen silences every current connection (HalfOpen) while new
	// ones flow; after the fault's duration it resets the silenced ones,
	// as a TCP stack that gave up on them would.
	HalfOpen
	// Slow shapes both directions with the fault's Shaping for its
	// duration, then restores the shaping they had.
	Slow
)

func (k FaultKind) String() string {
	switch k {
	case Cut:
		return "cut"
	case Stall:
		return "stall"
	case HalfOpen:
		return "half-open"
	case Slow:
		return "slow"
	}
	return fmt.Sprintf("FaultKind(%d)", int(k))
}

// Fault is one step of a schedule: wait After, then inject Kind; Stall,
// HalfOpen and Slow last For. Steps do not overlap. A Fault without a Kind
// only waits.
type Fault struct {
	Kind    FaultKind
	After   time.Duration
	For     time.Duration
	Shaping Shaping // Slow only: the shaping of both directions
}

func (f Fault) String() string {
	if f.Kind == Cut {
		return fmt.Sprintf("after %v: cut", f.After)
	}
	return fmt.Sprintf("after %v: %v for %v", f.After, f.Kind, f.For)
}

// Plan describes random faults drawn from a generator with a fixed seed:
// the same Plan always gives the same schedule.
type Plan struct {
	Seed uint64
	// Every is the mean wait before each fault; each wait is drawn
	// uniformly from [Every/2, 3*Every/2).
	Every time.Duration
	// For is the mean duration of a stall, half-open or slow period, drawn
	// the same way.
	For time.Duration
	// Cut, Stall, HalfOpen and Slow are the relative odds of each kind.
	// All zero means equal odds.
	Cut, Stall, HalfOpen, Slow int
	// Shaping is the shaping of slow periods.
	Shaping Shaping
}

// Faults returns the first n faults of the plan.
func (pl Plan) Faults(n int) []Fault {
	rng := rand.New(rand.NewPCG(pl.Seed, 0x7e57))
	weights := []struct {
		kind FaultKind
		w    int
	}{{Cut, pl.Cut}, {Stall, pl.Stall}, {HalfOpen, pl.HalfOpen}, {Slow, pl.Slow}}
	total := 0
	for _, w := range weights {
		total += max(w.w, 0)
	}
	if total == 0 {
		for i := range weights {
			weights[i].w = 1
		}
		total = len(weights)
	}
	around := func(d time.Duration) time.Duration {
		if d <= 0 {
			return 0
		}
		return d/2 + time.Duration(rng.Int64N(int64(d)))
	}
	out := make([]Fault, n)
	for i := range out {
		pick := rng.IntN(total)
		var kind FaultKind
		for _, w := range weights {
			if pick < max(w.w, 0) {
				kind = w.kind
				break
			}
			pick -= max(w.w, 0)
		}
		f := Fault{Kind: kind, After: around(pl.Every)}
		if kind != Cut {
			f.For = around(pl.For)
		}
		if kind == Slow {
			f.Shaping = pl.Shaping
		}
		out[i] = f
	}
	return out
}

// Stats counts what an [Injector] did.
type Stats struct {
	// Injected counts the faults injected, by kind.
	Injected map[FaultKind]int
	// Hit counts, by kind, the faults that found at least one connection
	// to cut, freeze or silence (a Slow fault always counts).
	Hit map[FaultKind]int
	// Links counts, by kind, the connections that Cut faults cut and
	// HalfOpen faults silenced.
	Links map[FaultKind]int
}

// Injector injects a schedule of faults into a [Proxy], from
// [Proxy.Inject] until Stop.
type Injector struct {
	p       *Proxy
	faults  []Fault
	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once

	mu    sync.Mutex
	stats Stats
}

// Inject starts injecting faults into the proxy, in order, starting over
// at the end of the list, until Stop or the proxy's Close. Run one
// Injector at a time on a proxy, and do not Freeze, Thaw or Shape it by
// hand meanwhile.
func (p *Proxy) Inject(faults []Fault) *Injector {
	in := &Injector{
		p:       p,
		faults:  append([]Fault(nil), faults...),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
		stats:   Stats{Injected: make(map[FaultKind]int), Hit: make(map[FaultKind]int), Links: make(map[FaultKind]int)},
	}
	p.mu.Lock()
	if p.closed || len(faults) == 0 {
		p.mu.Unlock()
		close(in.stopped)
		return in
	}
	p.wg.Add(1) // Close, which Waits, has not begun
	p.mu.Unlock()
	go in.run()
	return in
}

// Stop stops injecting, undoes the fault in progress (thaws a stall, resets
// the connections a half-open fault silenced, restores the shaping a slow
// period changed), waits until that is done and returns the counts. It is
// idempotent.
func (in *Injector) Stop() Stats {
	in.once.Do(func() { close(in.stop) })
	<-in.stopped
	return in.Stats()
}

// Stats returns the counts so far.
func (in *Injector) Stats() Stats {
	in.mu.Lock()
	defer in.mu.Unlock()
	return Stats{Injected: maps.Clone(in.stats.Injected), Hit: maps.Clone(in.stats.Hit), Links: maps.Clone(in.stats.Links)}
}

func (in *Injector) run() {
	defer in.p.wg.Done()
	defer close(in.stopped)
	for {
		start := time.Now()
		for _, f := range in.faults {
			if !in.wait(f.After) || !in.inject(f) {
				return
			}
		}
		// A schedule whose steps take no time must not spin.
		if !in.wait(time.Millisecond - time.Since(start)) {
			return
		}
	}
}

// wait waits for d; it reports false if the injector or the proxy stopped
// meanwhile.
func (in *Injector) wait(d time.Duration) bool {
	select {
	case <-in.stop:
		return false
	case <-in.p.done:
		return false
	default:
	}
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-in.stop:
	case <-in.p.done:
	}
	return false
}

// inject injects f and, for faults that last, waits and undoes it. It
// reports false if the injector or the proxy stopped meanwhile.
func (in *Injector) inject(f Fault) bool {
	links, hit := 0, false
	var undo func()
	switch f.Kind {
	case Cut:
		links = in.p.cutAll()
		hit = links > 0
	case Stall:
		hit = len(in.p.snapshot()) > 0
		in.p.Freeze()
		undo = in.p.Thaw
	case HalfOpen:
		silenced := in.p.halfOpen()
		links = len(silenced)
		hit = links > 0
		undo = func() { cut(silenced) }
	case Slow:
		hit = true
		up, down := in.p.Shaping(ToTarget), in.p.Shaping(ToClient)
		in.p.Shape(ToTarget, f.Shaping)
		in.p.Shape(ToClient, f.Shaping)
		undo = func() {
			in.p.Shape(ToTarget, up)
			in.p.Shape(ToClient, down)
		}
	default:
		return true
	}
	in.mu.Lock()
	in.stats.Injected[f.Kind]++
	if hit {
		in.stats.Hit[f.Kind]++
	}
	in.stats.Links[f.Kind] += links
	in.mu.Unlock()
	if undo == nil {
		return true
	}
	defer undo()
	return in.wait(f.For)
}
