package natsbroker_test

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/natsbroker"
	"github.com/wsrpc/wsrpc/pubsub"
)

// A pub/sub node whose events reach the nodes sharing its NATS server.
// Run one per process, each with its own Broker, behind a load balancer.
// (It needs a running nats-server: the conformance test,
// TestConformance, runs three such nodes on a real one.)
func ExampleNew() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := natsbroker.New(ctx, "nats://127.0.0.1:4222", nil)
	if err != nil {
		panic(err) // no server answered within ctx: wraps wsrpc.ErrBrokerUnavailable
	}
	defer b.Close()

	ps := pubsub.NewServer(&pubsub.Options{Broker: b})
	defer ps.Close()
	mux := wsrpc.NewMux()
	srv, err := wsrpc.NewServer(mux, nil)
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	ps.Register(srv, mux)
	http.Handle("/pubsub", srv)
	// http.ListenAndServe(":8000", nil)
}

// A Broker on a connection of the application's own, made with the
// options the Broker needs (nothing buffered while disconnected,
// reconnecting forever) after the application's.
func ExampleNewConn() {
	nc, err := nats.Connect("nats://127.0.0.1:4222", append([]nats.Option{nats.Name("node-1")}, natsbroker.NATSOptions(nil)...)...)
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	b, err := natsbroker.NewConn(nc, nil)
	if err != nil {
		panic(err)
	}
	defer b.Close()
	_ = pubsub.NewServer(&pubsub.Options{Broker: b})
}

// How channel names become subjects.
func ExampleSubject() {
	for _, ch := range []string{"EventNotifier", "wsrpc.node.0af3", "orders.*", "a b", "..x"} {
		s, _ := natsbroker.Subject(ch)
		fmt.Printf("%-16q %s\n", ch, s)
	}
	// Output:
	// "EventNotifier"  EventNotifier
	// "wsrpc.node.0af3" wsrpc.node.0af3
	// "orders.*"       orders.%2A
	// "a b"            a%20b
	// "..x"            %2E.x
}
