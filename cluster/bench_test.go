package cluster_test

import (
	"testing"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/internal/brokertest"
	"github.com/wsrpc/wsrpc/pubsub"
)

// BenchmarkCall compares a call to a client on another node, routed over
// a MemoryBroker, with the same call to a client of the caller's own node
// (Node.Call on a local client is a Conn.Call), one caller at a time and
// 64 at a time (brokertest.BenchCalls, which the broker adapters run on
// their real brokers too). It reports the latencies' p50 and p99.
//
//	go test -run '^$' -bench BenchmarkCall -benchtime 2s ./cluster
func BenchmarkCall(b *testing.B) {
	mb := pubsub.NewMemoryBroker()
	brokertest.BenchCalls(b, func(testing.TB) wsrpc.Broker { return mb })
}
