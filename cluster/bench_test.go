package cluster_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wsrpc/wsrpc/cluster"
	"github.com/wsrpc/wsrpc/pubsub"
)

// BenchmarkCall compares a call to a client on another node, routed over
// a MemoryBroker, with the same call to a client of the caller's own node
// (Node.Call on a local client is a Conn.Call), one caller at a time
// ("serial") and 64 at a time ("parallel"). It reports the latencies'
// p50 and p99.
//
//	go test -run '^$' -bench BenchmarkCall -benchtime 2s ./cluster
func BenchmarkCall(b *testing.B) {
	ns := newCluster(b, pubsub.NewMemoryBroker(), 2, nil)
	dial(b, ns[0], "near", nil)
	dial(b, ns[1], "far", nil)
	for _, to := range []string{"near", "far"} {
		name := map[string]string{"near": "local", "far": "routed"}[to]
		for _, par := range []int{1, 64} {
			mode := map[int]string{1: "serial", 64: "parallel"}[par]
			b.Run(name+"/"+mode, func(b *testing.B) { benchCalls(b, ns[0].node, to, par) })
		}
	}
}

func benchCalls(b *testing.B, n *cluster.Node, to string, par int) {
	ctx := context.Background()
	var mu sync.Mutex
	var all []time.Duration
	work := make(chan struct{}, b.N)
	for range b.N {
		work <- struct{}{}
	}
	close(work)
	b.ResetTimer()
	var wg sync.WaitGroup
	for range par {
		wg.Go(func() {
			lat := make([]time.Duration, 0, b.N/par+1)
			for range work {
				start := time.Now()
				if _, err := cluster.Call[int](ctx, n, to, "add", addArgs{A: 1, B: 2}); err != nil {
					b.Error(err)
					return
				}
				lat = append(lat, time.Since(start))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	b.StopTimer()
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	b.ReportMetric(float64(len(all))/b.Elapsed().Seconds(), "calls/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(0, "ns/op")
}
