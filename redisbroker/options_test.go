package redisbroker_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/internal/brokertest"
	"github.com/wsrpc/wsrpc/internal/services"
	"github.com/wsrpc/wsrpc/redisbroker"
)

// TestDialErrors: a bad URL, bad options (every problem named at once),
// and a Redis that is not there fail Dial, the last with
// ErrBrokerUnavailable.
func TestDialErrors(t *testing.T) {
	ctx := brokertest.Ctx(t)
	if _, err := redisbroker.Dial(ctx, "http://127.0.0.1:1", nil); err == nil {
		t.Error("Dial of an http:// URL succeeded")
	}
	_, err := redisbroker.Dial(ctx, "redis://127.0.0.1:1", &redisbroker.Options{
		ConnectTimeout: -1,
		Reconnect:      redisbroker.Backoff{InitialInterval: time.Minute, MaxInterval: time.Second},
	})
	if err == nil || !strings.Contains(err.Error(), "ConnectTimeout") || !strings.Contains(err.Error(), "InitialInterval") {
		t.Errorf("Dial with bad options = %v, want both problems named", err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(services.FreePort(t))
	if _, err := redisbroker.Dial(ctx, "redis://"+addr, nil); !errors.Is(err, wsrpc.ErrBrokerUnavailable) {
		t.Errorf("Dial of %s, where nothing listens = %v, want ErrBrokerUnavailable", addr, err)
	}
}

// TestClose: once closed, Publish and Subscribe fail with ErrClosed, a
// subscription's stop still returns, Close again returns nil, and the
// client given to DialClient is still open.
func TestClose(t *testing.T) {
	ctx := brokertest.Ctx(t)
	srv := services.Redis(t)
	rc := rawClient(t, srv)
	b, err := redisbroker.DialClient(ctx, rc, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop, err := b.Subscribe(ctx, "c", func([]byte) {})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	stop()
	if err := b.Publish(ctx, "c", nil); !errors.Is(err, wsrpc.ErrClosed) {
		t.Errorf("Publish after Close = %v, want ErrClosed", err)
	}
	if _, err := b.Subscribe(ctx, "c", func([]byte) {}); !errors.Is(err, wsrpc.ErrClosed) {
		t.Errorf("Subscribe after Close = %v, want ErrClosed", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("Close again = %v", err)
	}
	if err := rc.Ping(ctx).Err(); err != nil {
		t.Errorf("the client given to DialClient: %v", err)
	}
}

// TestSubscribeContext: Subscribe with an ended context fails with the
// context's error, and leaves no subscription behind.
func TestSubscribeContext(t *testing.T) {
	ctx := brokertest.Ctx(t)
	srv := services.Redis(t)
	b := dial(t, srv, nil)
	done, cancel := context.WithCancel(ctx)
	cancel()
	called := make(chan struct{}, 1)
	if _, err := b.Subscribe(done, "ctx", func([]byte) { called <- struct{}{} }); !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe with a canceled context = %v, want context.Canceled", err)
	}
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rc.Close()
	got := make(chan string, 1)
	stop, err := b.Subscribe(ctx, "ctx", func(m []byte) { got <- string(m) })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if err := rc.Publish(ctx, "ctx", "m").Err(); err != nil {
		t.Fatal(err)
	}
	recv(ctx, t, got)
	select {
	case <-called:
		t.Error("the subscription whose Subscribe failed was called")
	default:
	}
}
