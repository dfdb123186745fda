package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/cluster"
	"github.com/wsrpc/wsrpc/pubsub"
)

// startNode serves a wsrpc.Server on /ws/{client_id} of a loopback HTTP
// server and joins it to the cluster of b's nodes.
func startNode(ctx context.Context, b wsrpc.Broker) (*wsrpc.Server, *cluster.Node, string, func()) {
	srv, err := wsrpc.NewServer(nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	hm := http.NewServeMux()
	hm.Handle("/ws/{client_id}", srv)
	hs := httptest.NewServer(hm)
	node, err := cluster.Join(ctx, srv, b, nil)
	if err != nil {
		log.Fatal(err)
	}
	url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws/"
	return srv, node, url, func() { node.Close(); srv.Close(); hs.Close() }
}

// Two nodes share a broker (here a MemoryBroker; Redis, NATS or
// PostgreSQL between processes); alice connects to the second, and the
// first calls her.
func ExampleNode_Call() {
	ctx := context.Background()
	b := pubsub.NewMemoryBroker()
	_, first, _, stop1 := startNode(ctx, b)
	defer stop1()
	second, _, url, stop2 := startNode(ctx, b)
	defer stop2()

	methods := wsrpc.NewMux()
	wsrpc.Register(methods, "add", func(_ context.Context, a struct{ A, B int }) (int, error) { return a.A + a.B, nil })
	alice, err := wsrpc.Dial(ctx, url+"alice", &wsrpc.DialOptions{Methods: methods})
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Close()
	for len(second.ConnsByPathValue("client_id", "alice")) == 0 {
		time.Sleep(time.Millisecond) // the server indexes her just after the handshake
	}

	sum, err := cluster.Call[int](ctx, first, "alice", "add", map[string]int{"A": 2, "B": 3})
	fmt.Println(sum, err)
	_, err = cluster.Call[int](ctx, first, "bob", "add", nil)
	fmt.Println(errors.Is(err, cluster.ErrNoSuchClient))
	// Output:
	// 5 <nil>
	// true
}
