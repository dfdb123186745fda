package redisbroker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/internal/brokertest"
	"github.com/wsrpc/wsrpc/internal/services"
	"github.com/wsrpc/wsrpc/redisbroker"
)

// dial returns a Broker on srv, closed when the test ends.
func dial(t testing.TB, srv *services.Server, opts *redisbroker.Options) *redisbroker.Broker {
	t.Helper()
	b, err := redisbroker.Dial(brokertest.Ctx(t), srv.URL("redis", ""), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// TestConformance runs the wsrpc.Broker suite on a real redis-server,
// stopped and started again for the outage tests.
func TestConformance(t *testing.T) {
	srv := services.Redis(t)
	brokertest.Run(t, brokertest.Harness{
		New:        func(t testing.TB) wsrpc.Broker { return dial(t, srv, nil) },
		Stop:       srv.Stop,
		Start:      srv.Start,
		MaxMessage: redisbroker.DefaultMaxMessage,
	})
}

// states records what a Broker reports to its watchers.
func states(t *testing.T, b *redisbroker.Broker) chan error {
	ch := make(chan error, 64)
	t.Cleanup(b.Watch(func(err error) { ch <- err }))
	return ch
}

// next waits for the next report of ch that is a loss (down) or a
// recovery.
func next(ctx context.Context, t *testing.T, ch chan error, down bool) {
	t.Helper()
	for {
		select {
		case err := <-ch:
			if (err != nil) != down {
				continue
			}
			if down && !errors.Is(err, wsrpc.ErrBrokerUnavailable) {
				t.Errorf("reported %v, want an error wrapping ErrBrokerUnavailable", err)
			}
			return
		case <-ctx.Done():
			t.Fatalf("no report of the link (down: %v): %v", down, ctx.Err())
		}
	}
}

// TestKilledRedis: redis-server is killed (SIGKILL, as in a crash) and
// comes back empty. Both Brokers report the loss, Publish and Subscribe
// fail with ErrBrokerUnavailable, both report the recovery, and the
// subscription made before hears what is published after.
func TestKilledRedis(t *testing.T) {
	ctx := brokertest.Ctx(t)
	srv := services.Redis(t)
	var logs syncBuffer
	sub := dial(t, srv, &redisbroker.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	pub := dial(t, srv, nil)
	got := make(chan string, 16)
	stop, err := sub.Subscribe(ctx, "killed", func(m []byte) { got <- string(m) })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ss, ps := states(t, sub), states(t, pub)
	if err := pub.Publish(ctx, "killed", []byte("before")); err != nil {
		t.Fatal(err)
	}
	if m := recv(ctx, t, got); m != "before" {
		t.Fatalf("got %q", m)
	}

	srv.Kill()
	next(ctx, t, ss, true)
	next(ctx, t, ps, true)
	if err := pub.Publish(ctx, "killed", []byte("lost")); !errors.Is(err, wsrpc.ErrBrokerUnavailable) {
		t.Errorf("Publish while down = %v, want ErrBrokerUnavailable", err)
	}
	if _, err := sub.Subscribe(ctx, "other", func([]byte) {}); !errors.Is(err, wsrpc.ErrBrokerUnavailable) {
		t.Errorf("Subscribe while down = %v, want ErrBrokerUnavailable", err)
	}

	srv.Start()
	next(ctx, t, ss, false)
	next(ctx, t, ps, false)
	if err := pub.Publish(ctx, "killed", []byte("after")); err != nil {
		t.Fatalf("Publish once back: %v", err)
	}
	if m := recv(ctx, t, got); m != "after" {
		t.Errorf("got %q, want after", m)
	}
	for _, want := range []string{"link to Redis lost", "link to Redis back"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log has no %q:\n%s", want, logs.String())
		}
	}
}

// syncBuffer is a bytes.Buffer for a logger in another goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestOneConnection: a Broker holds one pub/sub connection for all its
// channels, and one Redis subscription per channel however many of its
// subscriptions want it; the channel is unsubscribed when the last one
// stops, and can be subscribed again at once.
func TestOneConnection(t *testing.T) {
	ctx := brokertest.Ctx(t)
	srv := services.Redis(t)
	rc := rawClient(t, srv)
	b := dial(t, srv, nil)
	numsub := func(ch string) int64 {
		t.Helper()
		n, err := rc.PubSubNumSub(ctx, ch).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n[ch]
	}
	got := make(chan string, 64)
	var stops []func()
	for _, ch := range []string{"one", "one", "two"} {
		stop, err := b.Subscribe(ctx, ch, func(m []byte) { got <- ch + ":" + string(m) })
		if err != nil {
			t.Fatal(err)
		}
		stops = append(stops, stop)
	}
	if n1, n2 := numsub("one"), numsub("two"); n1 != 1 || n2 != 1 {
		t.Errorf("Redis subscribers: one %d, two %d; want 1 each", n1, n2)
	}
	list, err := rc.Do(ctx, "CLIENT", "LIST", "TYPE", "pubsub").Text()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(strings.Split(strings.TrimSpace(list), "\n")); n != 1 { // one line per connection
		t.Errorf("%d pub/sub connections, want 1:\n%s", n, list)
	}

	stops[0]()
	if err := b.Publish(ctx, "one", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if m := recv(ctx, t, got); m != "one:x" {
		t.Errorf("got %q, want one:x from the subscription left", m)
	}
	stops[1]()
	for numsub("one") != 0 {
		select {
		case <-ctx.Done():
			t.Fatal("channel one still subscribed in Redis after its last subscription stopped")
		case <-time.After(10 * time.Millisecond):
		}
	}
	// Stop and subscribe again at once, many times: the replies to
	// UNSUBSCRIBE and SUBSCRIBE do not confuse the Broker.
	for i := range 20 {
		stop, err := b.Subscribe(ctx, "one", func(m []byte) { got <- "one:" + string(m) })
		if err != nil {
			t.Fatal(err)
		}
		msg := fmt.Sprint(i)
		if err := b.Publish(ctx, "one", []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if m := recv(ctx, t, got); m != "one:"+msg {
			t.Fatalf("got %q, want one:%s", m, msg)
		}
		stop()
	}
	stops[2]()
}

// recv returns the next value of ch, failing the test when ctx ends first.
func recv[T any](ctx context.Context, t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatalf("nothing came: %v", ctx.Err())
		panic("unreachable")
	}
}
