package redisbroker_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/internal/brokertest"
	"github.com/wsrpc/wsrpc/internal/services"
	"github.com/wsrpc/wsrpc/redisbroker"
)

// freezer is a TCP proxy on loopback in front of a server that can stop
// passing bytes, both ways, with the connections left open: a link that
// dies without a word, as behind a failed router.
type freezer struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	frozen bool
	thaw   chan struct{} // closed when unfrozen
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target, thaw: make(chan struct{})}
	close(f.thaw)
	f.wg.Go(f.accept)
	t.Cleanup(f.close)
	return f
}

func (f *freezer) addr() string { return f.ln.Addr().String() }

func (f *freezer) accept() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", f.target)
		if err != nil {
			c.Close()
			continue
		}
		f.mu.Lock()
		f.conns = append(f.conns, c, u)
		f.mu.Unlock()
		f.wg.Go(func() { f.pipe(u, c) })
		f.wg.Go(func() { f.pipe(c, u) })
	}
}

// pipe copies from src to dst, holding each chunk while frozen.
func (f *freezer) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			f.mu.Lock()
			thaw := f.thaw
			f.mu.Unlock()
			<-thaw
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (f *freezer) freeze(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if on == f.frozen {
		return
	}
	f.frozen = on
	if on {
		f.thaw = make(chan struct{})
	} else {
		close(f.thaw)
	}
}

func (f *freezer) close() {
	f.ln.Close()
	f.freeze(false)
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// TestSilentLink: the link to Redis stops passing bytes without closing.
// The Broker notices by its pings within about two PingIntervals, reports
// the loss, fails Publish, cannot reconnect while the link is dead (its
// tries time out), and once bytes pass again reconnects, reports it, and
// its subscription hears Redis again.
func TestSilentLink(t *testing.T) {
	ctx := brokertest.Ctx(t)
	srv := services.Redis(t)
	fz := newFreezer(t, srv.Addr)
	b, err := redisbroker.Dial(ctx, "redis://"+fz.addr(), &redisbroker.Options{
		PingInterval:   250 * time.Millisecond,
		ConnectTimeout: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	st := states(t, b)
	got := make(chan string, 16)
	stop, err := b.Subscribe(ctx, "silent", func(m []byte) { got <- string(m) })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	rc := rawClient(t, srv) // straight to Redis, past the freezer

	for len(st) > 0 {
		<-st // a report before the freeze (a ping answered late): not the one awaited
	}
	fz.freeze(true)
	next(ctx, t, st, true)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := b.Publish(pctx, "silent", []byte("lost")); !errors.Is(err, wsrpc.ErrBrokerUnavailable) {
		t.Errorf("Publish on a dead link = %v, want ErrBrokerUnavailable", err)
	}
	fz.freeze(false)
	next(ctx, t, st, false)
	if err := rc.Publish(ctx, "silent", "after").Err(); err != nil {
		t.Fatal(err)
	}
	if m := recv(ctx, t, got); m != "after" {
		t.Errorf("got %q, want after", m)
	}
}
