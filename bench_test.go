package wsrpc

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/wsrpc/wsrpc/internal/wire"
)

// BenchmarkRoundTrip is one echo call over a loopback WebSocket, client to
// server and back: encode, write, read, decode, dispatch, answer.
func BenchmarkRoundTrip(b *testing.B) {
	for _, size := range []int{16, 16 << 10} {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			_, url := testServer(b, echoMux(), nil)
			cl := testDial(b, url, &DialOptions{ConnOptions: ConnOptions{KeepAlive: KeepAlive{Interval: -1}}})
			ctx := context.Background()
			args := textArgs{strings.Repeat("x", size)}
			b.SetBytes(int64(2 * size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Call[string](ctx, cl, "echo", args); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRoundTripParallel is many echo calls in flight at once on one
// loopback connection.
func BenchmarkRoundTripParallel(b *testing.B) {
	_, url := testServer(b, echoMux(), nil)
	cl := testDial(b, url, &DialOptions{ConnOptions: ConnOptions{KeepAlive: KeepAlive{Interval: -1}}})
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := Call[string](ctx, cl, "echo", textArgs{"0123456789abcdef"}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkClientGo is echo calls made with Client.Go from one goroutine,
// at most inflight at once, on one loopback connection: done frees a slot.
func BenchmarkClientGo(b *testing.B) {
	for _, inflight := range []int{1, 64} {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			_, url := testServer(b, echoMux(), nil)
			cl := testDial(b, url, &DialOptions{ConnOptions: ConnOptions{KeepAlive: KeepAlive{Interval: -1}}})
			ctx := context.Background()
			slots := make(chan struct{}, inflight)
			done := func(r *Reply) {
				if err := r.Err(); err != nil {
					b.Error(err)
				}
				<-slots
			}
			args := textArgs{"0123456789abcdef"}
			b.ReportAllocs()
			for b.Loop() {
				slots <- struct{}{}
				if err := cl.Go(ctx, "echo", args, done); err != nil {
					b.Fatal(err)
				}
			}
			for range inflight { // the last calls' answers
				slots <- struct{}{}
			}
		})
	}
}

// BenchmarkDecode decodes a request frame.
func BenchmarkDecode(b *testing.B) {
	frame := []byte(`{"request": {"method": "echo", "arguments": {"text": "0123456789abcdef"}, "call_id": "8a4f0c3b9d2e4f6a8b1c2d3e4f5a6b7c"}, "response": null}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	var f wire.Frame
	for b.Loop() {
		if err := wire.Decode(frame, &f); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncode encodes a response frame.
func BenchmarkEncode(b *testing.B) {
	id := []byte(`"8a4f0c3b9d2e4f6a8b1c2d3e4f5a6b7c"`)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = wire.AppendResponseStart(buf[:0])
		buf = wire.AppendString(buf, "0123456789abcdef")
		buf = wire.AppendResponseEnd(buf, "str", id)
	}
}

// BenchmarkWriterYield shows what the writer's runtime.Gosched before each
// batch buys: with many calls in flight on one connection, the frames that
// handlers are about to queue join the batch, and one write carries many.
func BenchmarkWriterYield(b *testing.B) {
	for _, yield := range []bool{true, false} {
		b.Run(fmt.Sprintf("yield=%v", yield), func(b *testing.B) {
			writerYields = yield
			defer func() { writerYields = true }()
			_, url := testServer(b, echoMux(), nil)
			cl := testDial(b, url, &DialOptions{ConnOptions: ConnOptions{KeepAlive: KeepAlive{Interval: -1}}})
			ctx := context.Background()
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := Call[string](ctx, cl, "echo", textArgs{"0123456789abcdef"}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
