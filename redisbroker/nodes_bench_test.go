package redisbroker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsrpc/wsrpc/internal/brokertest"
	"github.com/wsrpc/wsrpc/internal/services"
	"github.com/wsrpc/wsrpc/pubsub"
)

// BenchmarkFanoutNodes is the fan-out of scenario f1 of ../shared/bench
// (1,000 subscribers, one topic, 16 publishes in flight) on one node and
// on two nodes that share one real Redis, in the same run: the
// subscribers are split evenly between the nodes and the application
// publishes on the first, so half the deliveries cross Redis. A publish is
// complete once every subscriber got it. It reports deliveries/s and the
// p50 and p99 latency from Publish to a subscriber's handler.
//
//	cd redisbroker && go test -run '^$' -bench FanoutNodes -benchtime 3000x .
func BenchmarkFanoutNodes(b *testing.B) {
	srv := services.Redis(b)
	for _, nodes := range []int{1, 2} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) { benchFanout(b, srv, nodes, 1000, 16) })
	}
}

func benchFanout(b *testing.B, srv *services.Server, nNodes, nSubs, inflight int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var nodes []*brokertest.Node
	for range nNodes {
		nodes = append(nodes, brokertest.NewNode(b, dial(b, srv, nil), nil))
	}
	// The nodes are up once an event published on the first reaches a
	// subscriber of each.
	for _, n := range nodes[1:] {
		ready := make(chan struct{}, 1)
		stop := n.PubSub.Subscribe([]string{"ready"}, func(context.Context, pubsub.Event) error {
			select {
			case ready <- struct{}{}:
			default:
			}
			return nil
		})
		for done := false; !done; {
			if err := nodes[0].PubSub.Publish(ctx, []string{"ready"}, 1); err != nil {
				b.Fatal(err)
			}
			select {
			case <-ready:
				done = true
			case <-time.After(100 * time.Millisecond):
			}
		}
		stop()
	}

	n := b.N
	got := make([]atomic.Int32, n) // deliveries of each publish
	slots := make(chan struct{}, inflight)
	lat := make([][]time.Duration, nSubs) // per subscriber: no lock
	start := time.Now()
	var wg sync.WaitGroup
	for i := range nSubs {
		c := brokertest.Dial(b, nodes[i%nNodes].URL)
		lat[i] = make([]time.Duration, 0, n)
		if err := c.Subscribe(ctx, "t0", func(_ context.Context, ev pubsub.Event) error {
			var e struct {
				Seq int   `json:"seq"`
				T   int64 `json:"t"`
			}
			if err := json.Unmarshal(ev.Data, &e); err != nil {
				return err
			}
			lat[i] = append(lat[i], time.Since(start)-time.Duration(e.T))
			if got[e.Seq].Add(1) == int32(nSubs) {
				<-slots
				wg.Done()
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	t0 := time.Now()
	for seq := range n {
		slots <- struct{}{}
		wg.Add(1)
		data := map[string]int64{"seq": int64(seq), "t": int64(time.Since(start))}
		if err := nodes[0].PubSub.Publish(ctx, []string{"t0"}, data); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	elapsed := time.Since(t0)
	b.StopTimer()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50_us")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99_us")
	b.ReportMetric(0, "ns/op")
}
