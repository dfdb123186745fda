package redisbroker_test

import (
	"context"
	"log"
	"log/slog"
	"net/http"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/pubsub"
	"github.com/wsrpc/wsrpc/redisbroker"
)

// A pub/sub node on Redis: its events reach the other nodes on that Redis,
// Go and Python (fastapi_websocket_pubsub) alike, and theirs reach its
// subscribers.
func Example() {
	ctx := context.Background()
	b, err := redisbroker.Dial(ctx, "redis://127.0.0.1:6379/0", &redisbroker.Options{Logger: slog.Default()})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	ps := pubsub.NewServer(&pubsub.Options{Broker: b})
	defer ps.Close()
	mux := wsrpc.NewMux()
	srv, err := wsrpc.NewServer(mux, nil)
	if err != nil {
		log.Fatal(err)
	}
	ps.Register(srv, mux)
	http.Handle("/pubsub", srv)
	log.Fatal(http.ListenAndServe("127.0.0.1:8000", nil))
}
