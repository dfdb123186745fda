package brokertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/cluster"
)

// RunCluster runs routed calls ([cluster.Node.Call]) across three nodes,
// each with a Broker of its own from newBroker and a wsrpc.Server on its
// own loopback httptest server with a client connected: calls between
// every pair of nodes (a node's own client included), and 1,000 of them
// at once, get their result,
// the client's *wsrpc.Error unchanged and the cancellation carried to
// the client's handler; a client no node has fails with
// cluster.ErrNoSuchClient before the call's deadline; every node lists
// every client where it is.
func RunCluster(t *testing.T, newBroker func(t testing.TB) wsrpc.Broker) {
	ctx := Ctx(t)
	prefix := channel("cluster")
	var nodes []*clusterNode
	for i := range 3 {
		nodes = append(nodes, newClusterNode(t, newBroker(t), prefix, fmt.Sprintf("n%d", i)))
	}
	for _, n := range nodes {
		for len(n.node.Nodes()) != len(nodes) {
			select {
			case <-ctx.Done():
				t.Fatalf("node %s knows only %v: %v", n.node.ID(), n.node.Nodes(), ctx.Err())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	started := make(chan struct{}, 1)
	canceled := make(chan error, 1)
	for i, n := range nodes {
		m := wsrpc.NewMux()
		wsrpc.Register(m, "whoami", func(context.Context, struct{}) (string, error) { return fmt.Sprintf("c%d", i), nil })
		wsrpc.Register(m, "fail", func(context.Context, struct{}) (any, error) {
			return nil, &wsrpc.Error{Code: 4001, Message: "no funds", Data: []byte(`{"balance":3}`)}
		})
		wsrpc.Register(m, "block", func(ctx context.Context, _ struct{}) (any, error) {
			started <- struct{}{}
			<-ctx.Done()
			canceled <- ctx.Err()
			return nil, ctx.Err()
		})
		cl, err := wsrpc.Dial(ctx, n.url+fmt.Sprintf("/c%d", i), &wsrpc.DialOptions{ConnOptions: wsrpc.ConnOptions{Logger: quietLogger()}, Methods: m})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
	}

	// Dial returns once the handshake is done, which may be before the
	// server indexed the connection: wait until every node lists all.
	for _, n := range nodes {
		for {
			got, err := n.node.Clients(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == len(nodes) {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("node %s lists %+v: %v", n.node.ID(), got, ctx.Err())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}

	t.Run("Pairs", func(t *testing.T) {
		for i, from := range nodes {
			for j := range nodes {
				to := fmt.Sprintf("c%d", j)
				who, err := cluster.Call[string](ctx, from.node, to, "whoami", nil)
				if err != nil || who != to {
					t.Errorf("node %d → client %s: %q, %v", i, to, who, err)
				}
				err = from.node.Call(ctx, to, "fail", nil, nil)
				if e, ok := errors.AsType[*wsrpc.Error](err); !ok || e.Code != 4001 || e.Message != "no funds" || string(e.Data) != `{"balance":3}` {
					t.Errorf("node %d → client %s: fail: %v, want the client's error unchanged", i, to, err)
				}
			}
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		const calls = 1000
		var wg sync.WaitGroup
		errs := make(chan error, calls)
		for i := range calls {
			wg.Go(func() {
				from, to := nodes[i%len(nodes)], fmt.Sprintf("c%d", (i/len(nodes))%len(nodes))
				who, err := cluster.Call[string](ctx, from.node, to, "whoami", nil)
				if err == nil && who != to {
					err = fmt.Errorf("client %s answered as %s", to, who)
				}
				if err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	})
	t.Run("Cancel", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() { errc <- nodes[0].node.Call(cctx, "c2", "block", nil, nil) }()
		select {
		case <-started:
		case <-ctx.Done():
			t.Fatal("the call never reached the client")
		}
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("caller: %v, want context.Canceled", err)
		}
		select {
		case err := <-canceled:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("the client's handler saw %v, want context.Canceled", err)
			}
		case <-ctx.Done():
			t.Fatal("the client's handler never saw the cancellation")
		}
	})
	t.Run("UnknownClient", func(t *testing.T) {
		for i, n := range nodes {
			if err := n.node.Call(ctx, "nobody", "whoami", nil, nil); !errors.Is(err, cluster.ErrNoSuchClient) {
				t.Errorf("node %d: %v, want cluster.ErrNoSuchClient", i, err)
			}
			if ctx.Err() != nil {
				t.Fatal("the unknown client was found out by a timeout")
			}
		}
	})
	t.Run("Clients", func(t *testing.T) {
		for i, n := range nodes {
			got, err := n.node.Clients(ctx)
			if err != nil {
				t.Fatalf("node %d: %v", i, err)
			}
			if len(got) != len(nodes) {
				t.Fatalf("node %d lists %+v, want %d clients", i, got, len(nodes))
			}
			for _, c := range got {
				if want := "n" + strings.TrimPrefix(c.ClientID, "c"); c.Node != want {
					t.Errorf("node %d lists %+v, want it on %s", i, c, want)
				}
			}
		}
	})
}

// clusterNode is a wsrpc.Server mounted on /ws and /ws/{client_id} on a
// loopback httptest server, and its cluster.Node.
type clusterNode struct {
	node *cluster.Node
	url  string // ws:// URL of /ws
}

func newClusterNode(t testing.TB, b wsrpc.Broker, prefix, id string) *clusterNode {
	t.Helper()
	srv, err := wsrpc.NewServer(nil, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{Logger: quietLogger()}})
	if err != nil {
		t.Fatal(err)
	}
	hm := http.NewServeMux()
	hm.Handle("/ws", srv)
	hm.Handle("/ws/{client_id}", srv)
	hs := httptest.NewServer(hm)
	node, err := cluster.Join(Ctx(t), srv, b, &cluster.Options{
		ID: id, Prefix: prefix, Logger: quietLogger(),
		// A node knows the cluster a Heartbeat after it joined: 200 ms;
		// it forgets a silent one after 2 s, as by default.
		Heartbeat: 200 * time.Millisecond, MissedBeats: 10,
	})
	if err != nil {
		srv.Close()
		hs.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		node.Close()
		srv.Close()
		hs.Close()
	})
	return &clusterNode{node: node, url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
