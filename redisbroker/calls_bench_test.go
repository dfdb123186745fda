package redisbroker_test

import (
	"testing"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/internal/brokertest"
	"github.com/wsrpc/wsrpc/internal/services"
)

// BenchmarkCalls: calls routed over a real Redis to a client of another
// node, next to local calls, in one run (brokertest.BenchCalls).
//
//	cd redisbroker && go test -run '^$' -bench Calls -benchtime 2s .
func BenchmarkCalls(b *testing.B) {
	srv := services.Redis(b)
	brokertest.BenchCalls(b, func(t testing.TB) wsrpc.Broker { return dial(t, srv, nil) })
}
