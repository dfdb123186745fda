package brokertest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/cluster"
)

// BenchCalls measures calls from application code on one node to a client
// of a second node (routed, over Brokers from newBroker), next to calls to
// a client of its own node (local, a plain Conn.Call), in one run: one
// caller at a time and 64 at once. Each sub-benchmark reports calls/s and
// the p50 and p99 latency.
func BenchCalls(b *testing.B, newBroker func(testing.TB) wsrpc.Broker) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	prefix := channel("bench")
	a := newClusterNode(b, newBroker(b), prefix, "a")
	far := newClusterNode(b, newBroker(b), prefix, "b")
	for _, c := range []struct {
		n  *clusterNode
		id string
	}{{a, "near"}, {far, "far"}} {
		m := wsrpc.NewMux()
		wsrpc.Register(m, "add", func(_ context.Context, p struct{ A, B int }) (int, error) { return p.A + p.B, nil })
		cl, err := wsrpc.Dial(ctx, c.n.url+"/"+c.id, &wsrpc.DialOptions{ConnOptions: wsrpc.ConnOptions{Logger: quietLogger()}, Methods: m})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cl.Close() })
	}
	// Node a knows b, and b's client, once a routed call gets through.
	for {
		if _, err := cluster.Call[int](ctx, a.node, "far", "add", map[string]int{"A": 1, "B": 2}); err == nil {
			break
		} else if ctx.Err() != nil {
			b.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, to := range []string{"near", "far"} {
		name := map[string]string{"near": "local", "far": "routed"}[to]
		for _, par := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/callers=%d", name, par), func(b *testing.B) { benchCalls(b, a.node, to, par) })
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
				if _, err := cluster.Call[int](ctx, n, to, "add", map[string]int{"A": 1, "B": 2}); err != nil {
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
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50_us")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99_us")
	b.ReportMetric(0, "ns/op")
}
