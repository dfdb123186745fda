package pubsub_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/pubsub"
)

// Order is the data of an event on the topic orders.
type Order struct {
	ID   int    `json:"id"`
	Item string `json:"item"`
}

// A pub/sub server, a client that subscribes with a typed handler, and
// events published by another client and by the application.
func Example() {
	ctx := context.Background()
	quiet := wsrpc.ConnOptions{Logger: slog.New(slog.DiscardHandler)}

	// Server: pub/sub's methods on a wsrpc.Mux, served by a wsrpc.Server.
	ps := pubsub.NewServer(&pubsub.Options{Logger: quiet.Logger})
	defer ps.Close()
	mux := wsrpc.NewMux()
	srv, err := wsrpc.NewServer(mux, &wsrpc.ServerOptions{ConnOptions: quiet})
	if err != nil {
		panic(err)
	}
	ps.Register(srv, mux)
	hs := httptest.NewServer(srv) // or http.Handle("/pubsub", srv)
	defer hs.Close()
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(hs.URL, "http")

	// A client subscribes; its handler gets the events one at a time, in
	// order, decoded.
	sub, err := pubsub.Dial(ctx, url, &pubsub.ClientOptions{DialOptions: wsrpc.DialOptions{ConnOptions: quiet}})
	if err != nil {
		panic(err)
	}
	defer sub.Close()
	orders := make(chan Order, 2)
	err = sub.Subscribe(ctx, "orders", pubsub.Typed(func(ctx context.Context, topic string, o Order) error {
		orders <- o
		return nil
	}))
	if err != nil {
		panic(err)
	}

	// Another client publishes: Publish returns once the subscribers took
	// the event (sync, as FWP's default).
	pub, err := pubsub.Dial(ctx, url, &pubsub.ClientOptions{DialOptions: wsrpc.DialOptions{ConnOptions: quiet}})
	if err != nil {
		panic(err)
	}
	defer pub.Close()
	if err := pub.Publish(ctx, []string{"orders"}, Order{ID: 7, Item: "tea"}); err != nil {
		panic(err)
	}
	fmt.Println(<-orders)

	// So does the application, on the server.
	if err := ps.Publish(ctx, []string{"orders"}, Order{ID: 8, Item: "café"}); err != nil {
		panic(err)
	}
	fmt.Println(<-orders)
	// Output:
	// {7 tea}
	// {8 café}
}
