package pubsub

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"

	"github.com/gorilla/websocket"
)

// BenchmarkFanOut publishes 16-byte events from the application to 100
// subscribers that answer every notify as PubSubClient does (raw
// connections, so that the figure is the server's); one op is one event
// to all 100, published with sync from 16 goroutines, so that at most 16
// are in flight (the flow control of ../shared/bench's fan-out mode).
// deliveries/s is the figure of its scenario f1. traced: with
// Options.Trace and a trace context on each publish, and no Observer (the
// allocations per op are those of plain).
func BenchmarkFanOut(b *testing.B) {
	b.Run("plain", func(b *testing.B) { benchmarkFanOut(b, nil) })
	b.Run("traced", func(b *testing.B) { benchmarkFanOut(b, &Options{Trace: testTrace{}}) })
}

func benchmarkFanOut(b *testing.B, opts *Options) {
	ctx := context.Background()
	n := newNode(b, opts, nil)
	const subs = 100
	var got atomic.Int64
	for range subs {
		ws, _, err := websocket.DefaultDialer.DialContext(ctx, n.url, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer ws.Close()
		ws.WriteMessage(websocket.TextMessage, []byte(`{"request": {"method": "subscribe", "arguments": {"topics": ["bench"]}, "call_id": "s"}}`))
		ws.ReadMessage()
		go func() {
			for {
				_, msg, err := ws.ReadMessage()
				if err != nil {
					return
				}
				// The call id is the request's last key.
				i := len(msg) - len(`"},"response":null}`) - 32
				if i < 0 {
					continue
				}
				id := msg[i : i+32]
				ws.WriteMessage(websocket.TextMessage, append(append([]byte(`{"response": {"result": "None", "result_type": "str", "call_id": "`), id...), `"}}`...))
				got.Add(1)
			}
		}()
	}
	data := json.RawMessage(`"0123456789abcdef"`)
	pubCtx := context.WithValue(ctx, traceKey{}, [2]string{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", ""})
	topics := []string{"bench"}
	b.ReportAllocs()
	b.SetParallelism(8) // 16 publishers on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n.ps.publish(pubCtx, topics, data, "bench", true)
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(got.Load())/b.Elapsed().Seconds(), "deliveries/s")
	if st := n.ps.Stats(); st.Dropped > 0 {
		b.Logf("%d dropped", st.Dropped)
	}
}
