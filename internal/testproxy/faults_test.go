package testproxy

import (
	"errors"
	"io"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingEcho runs a loopback TCP server that echoes each connection's
// bytes back and counts the reads it made, until the test ends; it returns
// its address and the counter.
func countingEcho(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var reads atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						reads.Add(1)
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String(), &reads
}

// expectSilence checks that nothing, not even an EOF, arrives on c for d.
func expectSilence(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	if n, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %d bytes, %v; want nothing until the deadline", n, err)
	}
}

// expectEnd checks that c fails or ends (within a minute, a bound
// against a hang).
func expectEnd(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Minute))
	if _, err := io.Copy(io.Discard, c); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the connection did not end")
	}
}

// TestShape: fragmented and delayed bytes arrive whole and in order; the
// target reads them in many pieces; a delay delays.
func TestShape(t *testing.T) {
	target, reads := countingEcho(t)
	p := New(t, target)
	p.Shape(ToTarget, Shaping{Chunk: 3, Gap: 200 * time.Microsecond})
	want := Shaping{Delay: 30 * time.Millisecond, Jitter: time.Millisecond}
	p.Shape(ToClient, want)
	if got := p.Shaping(ToClient); got != want {
		t.Errorf("Shaping(ToClient) = %+v, want %+v", got, want)
	}
	c := dial(t, p.Addr())
	msg := strings.Repeat("0123456789", 20)
	start := time.Now()
	roundTrip(t, c, msg)
	if d := time.Since(start); d < want.Delay {
		t.Errorf("round trip took %v, less than the delay %v", d, want.Delay)
	}
	if n := reads.Load(); n < 10 {
		t.Errorf("the target read %d bytes in %d reads; want many fragments", len(msg), n)
	}

	p.Shape(ToTarget, Shaping{})
	p.Shape(ToClient, Shaping{})
	roundTrip(t, c, "unshaped")
}

// TestHalfOpen: a half-open link passes neither data nor FIN until it is
// cut, while new links flow.
func TestHalfOpen(t *testing.T) {
	p := New(t, echoServer(t))
	c := dial(t, p.Addr())
	roundTrip(t, c, "before")
	p.HalfOpen()
	if _, err := io.WriteString(c, "lost"); err != nil {
		t.Fatal(err)
	}
	expectSilence(t, c, 100*time.Millisecond)
	roundTrip(t, dial(t, p.Addr()), "a new link")
	c.(*net.TCPConn).CloseWrite() // a FIN that must not pass either
	expectSilence(t, c, 50*time.Millisecond)
	p.CutAll()
	expectEnd(t, c)
}

// TestInjectStall: a stall lasts until its end or until Stop, which thaws
// the proxy; the held bytes then arrive.
func TestInjectStall(t *testing.T) {
	p := New(t, echoServer(t))
	c := dial(t, p.Addr())
	roundTrip(t, c, "before")
	in := p.Inject([]Fault{{Kind: Stall, For: time.Hour}})
	waitUntil(t, func() bool { return in.Stats().Injected[Stall] == 1 })
	if _, err := io.WriteString(c, "held"); err != nil {
		t.Fatal(err)
	}
	expectSilence(t, c, 50*time.Millisecond)
	st := in.Stop()
	if st.Injected[Stall] != 1 || st.Hit[Stall] != 1 {
		t.Errorf("Stop() = %+v, want one stall that hit a link", st)
	}
	buf := make([]byte, 4)
	c.SetReadDeadline(time.Now().Add(time.Minute)) // against a hang
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "held" {
		t.Fatalf("after Stop: read %q, %v; want the held bytes", buf, err)
	}
	if st2 := in.Stop(); !reflect.DeepEqual(st, st2) {
		t.Errorf("second Stop() = %+v, want %+v", st2, st)
	}
}

// TestInjectHalfOpenAndCut: a half-open fault silences the links of its
// time and then resets them; a cut resets at once; new links flow.
func TestInjectHalfOpenAndCut(t *testing.T) {
	for _, kind := range []FaultKind{HalfOpen, Cut} {
		t.Run(kind.String(), func(t *testing.T) {
			p := New(t, echoServer(t))
			c := dial(t, p.Addr())
			roundTrip(t, c, "before")
			in := p.Inject([]Fault{{Kind: kind, For: 300 * time.Millisecond}, {After: time.Hour}})
			waitUntil(t, func() bool { return in.Stats().Injected[kind] == 1 })
			if kind == HalfOpen {
				expectSilence(t, c, 50*time.Millisecond)
			}
			expectEnd(t, c)
			roundTrip(t, dial(t, p.Addr()), "after")
			if st := in.Stop(); st.Links[kind] != 1 || st.Hit[kind] != 1 {
				t.Errorf("Stop() = %+v, want one link hit", st)
			}
		})
	}
}

// TestInjectSlow: a slow period shapes both directions, and Stop restores
// the shaping they had.
func TestInjectSlow(t *testing.T) {
	p := New(t, echoServer(t))
	base := Shaping{Chunk: 100}
	p.Shape(ToTarget, base)
	slow := Shaping{Delay: time.Millisecond, Chunk: 2}
	in := p.Inject([]Fault{{Kind: Slow, For: time.Hour, Shaping: slow}})
	waitUntil(t, func() bool { return in.Stats().Injected[Slow] == 1 })
	if up, down := p.Shaping(ToTarget), p.Shaping(ToClient); up != slow || down != slow {
		t.Errorf("during the slow period: shaping %+v and %+v, want %+v", up, down, slow)
	}
	roundTrip(t, dial(t, p.Addr()), "slowly")
	in.Stop()
	if up, down := p.Shaping(ToTarget), p.Shaping(ToClient); up != base || down != (Shaping{}) {
		t.Errorf("after Stop: shaping %+v and %+v, want %+v and none", up, down, base)
	}
}

// TestInjectStopsOnClose: the proxy's Close stops a running injector and
// thaws what it froze.
func TestInjectStopsOnClose(t *testing.T) {
	p := New(t, echoServer(t))
	in := p.Inject([]Fault{{Kind: Stall, For: time.Hour}})
	waitUntil(t, func() bool { return in.Stats().Injected[Stall] == 1 })
	p.Close()
	in.Stop()
	if in := p.Inject([]Fault{{Kind: Cut}}); in.Stop().Injected[Cut] != 0 {
		t.Error("an injector started after Close injected a fault")
	}
}

// TestPlan: a plan gives the same schedule for the same seed, follows its
// weights and keeps its durations in range.
func TestPlan(t *testing.T) {
	pl := Plan{Seed: 1, Every: 100 * time.Millisecond, For: 40 * time.Millisecond, Cut: 1, Stall: 1, HalfOpen: 1, Slow: 1,
		Shaping: Shaping{Chunk: 5}}
	a, b := pl.Faults(200), pl.Faults(200)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same plan gave two schedules")
	}
	pl2 := pl
	pl2.Seed = 2
	if reflect.DeepEqual(a, pl2.Faults(200)) {
		t.Error("two seeds gave the same schedule")
	}
	kinds := map[FaultKind]int{}
	for _, f := range a {
		kinds[f.Kind]++
		if f.After < pl.Every/2 || f.After >= 3*pl.Every/2 {
			t.Errorf("%v: wait out of range", f)
		}
		if f.Kind == Cut && f.For != 0 || f.Kind != Cut && (f.For < pl.For/2 || f.For >= 3*pl.For/2) {
			t.Errorf("%v: duration out of range", f)
		}
		if (f.Kind == Slow) != (f.Shaping != Shaping{}) {
			t.Errorf("%v: shaping %+v", f, f.Shaping)
		}
	}
	for _, k := range []FaultKind{Cut, Stall, HalfOpen, Slow} {
		if kinds[k] < 20 {
			t.Errorf("%d %v faults in 200 at equal odds", kinds[k], k)
		}
	}
	for _, f := range (Plan{Seed: 3, Cut: 1}).Faults(50) {
		if f.Kind != Cut {
			t.Fatalf("a plan of cuts only gave %v", f)
		}
	}
}

// waitUntil polls cond until it holds, failing the test after a minute
// (a bound against a hang).
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in a minute")
		}
		time.Sleep(time.Millisecond)
	}
}
