package natsbroker_test

import (
	"testing"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/internal/brokertest"
	"github.com/wsrpc/wsrpc/internal/services"
)

// BenchmarkCalls: calls routed over a real nats-server to a client of
// another node, next to local calls, in one run (brokertest.BenchCalls).
//
//	cd natsbroker && go test -run '^$' -bench Calls -benchtime 2s .
func BenchmarkCalls(b *testing.B) {
	srv := services.NATS(b)
	brokertest.BenchCalls(b, func(t testing.TB) wsrpc.Broker { return newBroker(t, srv, nil) })
}
