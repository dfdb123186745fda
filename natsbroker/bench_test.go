package natsbroker_test

import (
	"testing"

	"github.com/wsrpc/wsrpc/internal/brokertest"
	"github.com/wsrpc/wsrpc/internal/services"
)

// BenchmarkPublish: one publisher, each Publish waiting for the server's
// round trip, a 200-byte message, one subscriber on another connection.
func BenchmarkPublish(b *testing.B) {
	srv := services.NATS(b)
	ctx := brokertest.Ctx(b)
	sub, pub := newBroker(b, srv, nil), newBroker(b, srv, nil)
	subscribe(b, sub, "bench", func([]byte) {})
	msg := make([]byte, 200)
	b.ReportAllocs()
	for b.Loop() {
		if err := pub.Publish(ctx, "bench", msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishParallel: as BenchmarkPublish, from GOMAXPROCS
// goroutines sharing one Broker (their round trips overlap).
func BenchmarkPublishParallel(b *testing.B) {
	srv := services.NATS(b)
	ctx := brokertest.Ctx(b)
	sub, pub := newBroker(b, srv, nil), newBroker(b, srv, nil)
	subscribe(b, sub, "bench", func([]byte) {})
	msg := make([]byte, 200)
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := pub.Publish(ctx, "bench", msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
