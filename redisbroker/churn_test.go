package redisbroker_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/internal/brokertest"
	"github.com/wsrpc/wsrpc/internal/services"
)

// TestChurn: while redis-server is stopped and started five times, four
// goroutines subscribe, publish and stop on three shared channels. Every
// call either works or fails with ErrBrokerUnavailable (no other error, no
// hang); afterwards the Broker is up, and a channel used by the churn
// carries messages again.
func TestChurn(t *testing.T) {
	ctx := brokertest.Ctx(t)
	srv := services.Redis(t)
	b := dial(t, srv, nil)
	st := states(t, b)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 20000 { // bounded; the outages end it sooner
				select {
				case <-done:
					return
				default:
				}
				ch := fmt.Sprintf("churn.%d", (g+i)%3)
				stop, err := b.Subscribe(ctx, ch, func([]byte) {})
				if err != nil && !errors.Is(err, wsrpc.ErrBrokerUnavailable) {
					t.Errorf("Subscribe: %v", err)
					return
				}
				if err != nil {
					time.Sleep(time.Millisecond) // down: no need to spin
				}
				if err := b.Publish(ctx, ch, []byte("m")); err != nil && !errors.Is(err, wsrpc.ErrBrokerUnavailable) {
					t.Errorf("Publish: %v", err)
					return
				}
				if stop != nil {
					stop()
				}
			}
		})
	}
	for range 5 {
		srv.Stop()
		next(ctx, t, st, true)
		srv.Start()
		next(ctx, t, st, false)
	}
	close(done)
	wg.Wait()

	// A churn publish that Redis took may still be on its way to this
	// Broker's subscriber connection, which the new subscription shares:
	// "m" may come first, and is skipped.
	got := make(chan string, 1)
	stop, err := b.Subscribe(ctx, "churn.0", func(m []byte) {
		if string(m) == "m" {
			return
		}
		select {
		case got <- string(m):
		default:
		}
	})
	if err != nil {
		t.Fatalf("Subscribe after the churn: %v", err)
	}
	defer stop()
	if err := b.Publish(ctx, "churn.0", []byte("after")); err != nil {
		t.Fatalf("Publish after the churn: %v", err)
	}
	if m := recv(ctx, t, got); m != "after" {
		t.Errorf("got %q", m)
	}
}
