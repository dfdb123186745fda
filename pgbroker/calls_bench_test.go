package pgbroker_test

import (
	"testing"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/internal/brokertest"
	"github.com/wsrpc/wsrpc/internal/services"
)

// BenchmarkCalls: calls routed over a real PostgreSQL (LISTEN/NOTIFY) to a
// client of another node, next to local calls, in one run
// (brokertest.BenchCalls).
//
//	cd pgbroker && go test -run '^$' -bench Calls -benchtime 2s .
func BenchmarkCalls(b *testing.B) {
	url := services.PostgresURL(services.Postgres(b))
	brokertest.BenchCalls(b, func(t testing.TB) wsrpc.Broker { return newBroker(t, url, nil) })
}
