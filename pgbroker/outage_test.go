package pgbroker_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/internal/brokertest"
	"github.com/wsrpc/wsrpc/internal/services"
	"github.com/wsrpc/wsrpc/internal/testproxy"
	"github.com/wsrpc/wsrpc/pgbroker"
)

// reports records what a Broker's watcher is told.
type reports struct {
	mu      sync.Mutex
	errs    []error
	changed chan struct{}
}

func watch(t testing.TB, b *pgbroker.Broker) *reports {
	r := &reports{changed: make(chan struct{}, 1)}
	t.Cleanup(b.Watch(func(err error) {
		r.mu.Lock()
		r.errs = append(r.errs, err)
		r.mu.Unlock()
		select {
		case r.changed <- struct{}{}:
		default:
		}
	}))
	return r
}

// wait waits for report number n (from 1), and checks that it says the
// link is down (an ErrBrokerUnavailable) or back (nil).
func (r *reports) wait(ctx context.Context, t testing.TB, n int, down bool) {
	t.Helper()
	for {
		r.mu.Lock()
		errs := append([]error(nil), r.errs...)
		r.mu.Unlock()
		if len(errs) >= n {
			if err := errs[n-1]; down != (err != nil) || down && !errors.Is(err, wsrpc.ErrBrokerUnavailable) {
				t.Fatalf("report %d is %v, want down=%v (all: %v)", n, err, down, errs)
			}
			return
		}
		select {
		case <-r.changed:
		case <-ctx.Done():
			t.Fatalf("waiting for report %d: %v (so far: %v)", n, ctx.Err(), errs)
		}
	}
}

// testPool: a Broker publishes through the caller's pool, which it does
// not close, and may take its listening connection's settings from it.
func testPool(t *testing.T, url string) {
	ctx := brokertest.Ctx(t)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	opts := testOptions()
	opts.Pool = pool
	b, err := pgbroker.New(ctx, "", opts)
	if err != nil {
		t.Fatal(err)
	}
	s := subscribe(t, b, "pool")
	publish(t, b, "pool", []byte("through the pool"))
	if got := s.wait(ctx, t, 1); string(got[0]) != "through the pool" {
		t.Errorf("heard %q", got[0])
	}
	b.Close()
	if err := pool.Ping(ctx); err != nil {
		t.Errorf("the caller's pool after Close: %v", err)
	}
}

// testClosed: after Close, Publish and Subscribe fail with ErrClosed,
// stop functions and Close may still be called, and no fn runs.
func testClosed(t *testing.T, url string) {
	ctx := brokertest.Ctx(t)
	b := newBroker(t, url, nil)
	s := newSink()
	stop, err := b.Subscribe(ctx, "closed", s.fn)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if err := b.Publish(ctx, "closed", []byte("x")); !errors.Is(err, wsrpc.ErrClosed) {
		t.Errorf("Publish after Close = %v, want ErrClosed", err)
	}
	if _, err := b.Subscribe(ctx, "closed", s.fn); !errors.Is(err, wsrpc.ErrClosed) {
		t.Errorf("Subscribe after Close = %v, want ErrClosed", err)
	}
	stop()
	b.Close()
	other := newBroker(t, url, nil)
	publish(t, other, "closed", []byte("x"))
	if len(s.msgs) != 0 {
		t.Errorf("a closed Broker's subscription got %q", s.msgs)
	}
}

// testHalfOpen: the listening connection goes silent without closing (a
// network cut): the Broker notices with its ping within PingInterval plus
// Timeout, says so, reconnects, and its subscriptions hear again.
func testHalfOpen(t *testing.T, url, addr string) {
	ctx := brokertest.Ctx(t)
	proxy := testproxy.New(t, addr)
	opts := testOptions()
	opts.PingInterval = 100 * time.Millisecond
	opts.Timeout = 300 * time.Millisecond
	sub := newBroker(t, replaceHost(url, addr, proxy.Addr()), opts)
	r := watch(t, sub)
	s := subscribe(t, sub, "halfopen")
	pub := newBroker(t, url, nil)
	publish(t, pub, "halfopen", []byte("before"))
	s.wait(ctx, t, 1)

	proxy.HalfOpen()
	r.wait(ctx, t, 1, true)
	r.wait(ctx, t, 2, false)
	publish(t, pub, "halfopen", []byte("after"))
	if got := s.wait(ctx, t, 2); string(got[len(got)-1]) != "after" {
		t.Errorf("heard %q last, want after", got[len(got)-1])
	}
}

// testKilled: PostgreSQL killed (SIGKILL, no goodbye to the clients) and
// started again: the watchers hear of the loss and of the return;
// meanwhile Publish and Subscribe fail with ErrBrokerUnavailable, and a
// watcher registered then is told the link is down; afterwards the
// subscriptions made before hear what is published, and new ones work.
func testKilled(t *testing.T, s *services.Server) {
	ctx := brokertest.Ctx(t)
	url := services.PostgresURL(s)
	sub, pub := newBroker(t, url, nil), newBroker(t, url, nil)
	rs, rp := watch(t, sub), watch(t, pub)
	before := subscribe(t, sub, "killed")
	publish(t, pub, "killed", []byte("before"))
	before.wait(ctx, t, 1)

	s.Kill()
	restarted := false
	defer func() {
		if !restarted {
			s.Start()
		}
	}()
	rs.wait(ctx, t, 1, true)
	rp.wait(ctx, t, 1, true)
	if err := pub.Publish(ctx, "killed", []byte("lost")); !errors.Is(err, wsrpc.ErrBrokerUnavailable) {
		t.Errorf("Publish with the server killed = %v, want ErrBrokerUnavailable", err)
	}
	if _, err := sub.Subscribe(ctx, "killed.new", func([]byte) {}); !errors.Is(err, wsrpc.ErrBrokerUnavailable) {
		t.Errorf("Subscribe with the server killed = %v, want ErrBrokerUnavailable", err)
	}
	late := watch(t, sub)
	late.wait(ctx, t, 1, true)

	s.Start()
	restarted = true
	rs.wait(ctx, t, 2, false)
	rp.wait(ctx, t, 2, false)
	late.wait(ctx, t, 2, false)
	after := subscribe(t, sub, "killed.new")
	publish(t, pub, "killed", []byte("after"))
	publish(t, pub, "killed.new", []byte("new"))
	if got := before.wait(ctx, t, 2); string(got[1]) != "after" {
		t.Errorf("the subscription made before heard %q, want after", got[1])
	}
	if got := after.wait(ctx, t, 1); string(got[0]) != "new" {
		t.Errorf("the subscription made after heard %q, want new", got[0])
	}
}
