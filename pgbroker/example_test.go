package pgbroker_test

import (
	"context"
	"log"
	"net/http"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/pgbroker"
	"github.com/wsrpc/wsrpc/pubsub"
)

// A pub/sub node whose events reach the other nodes through PostgreSQL.
// Each node runs the same program on the same database.
func Example() {
	ctx := context.Background()
	b, err := pgbroker.New(ctx, "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", nil)
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
