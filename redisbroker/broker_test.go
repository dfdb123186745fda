package redisbroker_test

import (
	"testing"

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
