package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/cluster"
	"github.com/wsrpc/wsrpc/pubsub"
)

// exampleNode is a node whose Server is mounted on /ws/{client_id} of a
// loopback HTTP server, where clients connect.
type exampleNode struct {
	srv  *wsrpc.Server
	node *cluster.Node
	hs   *httptest.Server
}

func startNode(ctx context.Context, b wsrpc.Broker) *exampleNode {
	srv, err := wsrpc.NewServer(nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	hm := http.NewServeMux()
	hm.Handle("/ws/{client_id}", srv)
	node, err := cluster.Join(ctx, srv, b, nil)
	if err != nil {
		log.Fatal(err)
	}
	return &exampleNode{srv: srv, node: node, hs: httptest.NewServer(hm)}
}

func (n *exampleNode) stop() {
	n.node.Close()
	n.srv.Close()
	n.hs.Close()
}

// dial connects a client serving "add" as id.
func (n *exampleNode) dial(ctx context.Context, id string) *wsrpc.Client {
	methods := wsrpc.NewMux()
	wsrpc.Register(methods, "add", func(_ context.Context, a struct{ A, B int }) (int, error) { return a.A + a.B, nil })
	cl, err := wsrpc.Dial(ctx, "ws"+strings.TrimPrefix(n.hs.URL, "http")+"/ws/"+id, &wsrpc.DialOptions{Methods: methods})
	if err != nil {
		log.Fatal(err)
	}
	return cl // the server indexed it before Dial returned: every node finds it
}

// Two nodes share a broker (here a MemoryBroker; Redis, NATS or
// PostgreSQL between processes); alice connects to one, and the other
// calls her.
func ExampleNode_Call() {
	ctx := context.Background()
	broker := pubsub.NewMemoryBroker()
	other := startNode(ctx, broker)
	defer other.stop()
	alice := other.dial(ctx, "alice")
	defer alice.Close()

	srv, err := wsrpc.NewServer(nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	node, err := cluster.Join(ctx, srv, broker, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()

	sum, err := cluster.Call[int](ctx, node, "alice", "add", map[string]int{"A": 2, "B": 3})
	fmt.Println(sum, err)
	_, err = cluster.Call[int](ctx, node, "bob", "add", nil)
	fmt.Println(errors.Is(err, cluster.ErrNoSuchClient))
	// Output:
	// 5 <nil>
	// true
}
