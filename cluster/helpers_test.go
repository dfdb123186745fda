package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/cluster"
	"github.com/wsrpc/wsrpc/internal/brokertest"
)

func quiet() *slog.Logger {
	if testing.Verbose() && os.Getenv("WSRPC_TEST_LOG") == "1" {
		return slog.Default()
	}
	return slog.New(slog.DiscardHandler)
}

// ctxT returns a context that ends with the test or after 30 s.
func ctxT(t testing.TB) context.Context { return brokertest.Ctx(t) }

// node is a wsrpc.Server on its own loopback httptest server, mounted on
// /ws and /ws/{client_id}, and its cluster.Node.
type node struct {
	srv  *wsrpc.Server
	hs   *httptest.Server
	node *cluster.Node
	url  string // ws:// URL of /ws
	once sync.Once
}

// stop closes the node, its server and its HTTP server, once.
func (n *node) stop() {
	n.once.Do(func() {
		n.node.Close()
		n.srv.Close()
		n.hs.Close()
	})
}

func newNode(t testing.TB, b wsrpc.Broker, opts *cluster.Options) *node {
	t.Helper()
	// Beats 5 times faster than the default, and the same 2 s to forget
	// a silent node: a node knows the cluster 200 ms after it joined.
	o := cluster.Options{Logger: quiet(), Heartbeat: 200 * time.Millisecond, MissedBeats: 10}
	if opts != nil {
		o = *opts
		if o.Logger == nil {
			o.Logger = quiet()
		}
	}
	srv, err := wsrpc.NewServer(nil, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{Logger: quiet()}})
	if err != nil {
		t.Fatal(err)
	}
	hm := http.NewServeMux()
	hm.Handle("/ws", srv)
	hm.Handle("/ws/{client_id}", srv)
	n := &node{srv: srv, hs: httptest.NewServer(hm)}
	n.url = "ws" + strings.TrimPrefix(n.hs.URL, "http") + "/ws"
	if n.node, err = cluster.Join(ctxT(t), srv, b, &o); err != nil {
		n.hs.Close()
		srv.Close()
		t.Fatal(err)
	}
	t.Cleanup(n.stop)
	return n
}

// newCluster starts k nodes on b and waits until each knows all.
func newCluster(t testing.TB, b wsrpc.Broker, k int, opts *cluster.Options) []*node {
	t.Helper()
	nodes := make([]*node, k)
	for i := range nodes {
		nodes[i] = newNode(t, b, opts)
	}
	waitKnown(t, nodes...)
	return nodes
}

// waitKnown waits until every node knows exactly the given nodes.
func waitKnown(t testing.TB, nodes ...*node) {
	t.Helper()
	for _, n := range nodes {
		waitFor(t, fmt.Sprintf("node %s to know %d nodes", n.node.ID(), len(nodes)), func() bool {
			return len(n.node.Nodes()) == len(nodes)
		})
	}
}

// waitFor polls cond until it holds, failing the test after a minute (a
// bound against a hang, not a timing assertion).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// clientMethods are the methods every test client serves. started gets
// the ctx of each "block" call as it starts, ended its ctx's error.
type clientMethods struct {
	started chan context.Context
	ended   chan error
}

func newMethods() *clientMethods {
	return &clientMethods{started: make(chan context.Context, 16), ended: make(chan error, 16)}
}

type addArgs struct{ A, B int }

func (cm *clientMethods) mux(id string) *wsrpc.Mux {
	m := wsrpc.NewMux()
	wsrpc.Register(m, "add", func(_ context.Context, a addArgs) (int, error) { return a.A + a.B, nil })
	wsrpc.Register(m, "whoami", func(context.Context, struct{}) (string, error) { return id, nil })
	wsrpc.Register(m, "echo", func(_ context.Context, a map[string]any) (map[string]any, error) { return a, nil })
	wsrpc.Register(m, "big", func(_ context.Context, a struct{ N int }) (string, error) { return strings.Repeat("x", a.N), nil })
	wsrpc.Register(m, "fail", func(context.Context, struct{}) (any, error) {
		return nil, &wsrpc.Error{Code: 4001, Message: "no funds", Data: json.RawMessage(`{"balance":3}`)}
	})
	wsrpc.Register(m, "block", func(ctx context.Context, _ struct{}) (any, error) {
		cm.started <- ctx
		<-ctx.Done()
		cm.ended <- ctx.Err()
		return nil, ctx.Err()
	})
	return m
}

// dial connects client id to n, serving cm's methods.
func dial(t testing.TB, n *node, id string, cm *clientMethods) *wsrpc.Client {
	t.Helper()
	if cm == nil {
		cm = newMethods()
	}
	cl, err := wsrpc.Dial(ctxT(t), n.url+"/"+id, &wsrpc.DialOptions{
		ConnOptions: wsrpc.ConnOptions{Logger: quiet()},
		Methods:     cm.mux(id),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// link wraps a Broker as a node's own link to it: cut, the node can
// neither publish nor hear anything, as if it were dead or the broker
// away. With watch, cutting and restoring the link are reported to the
// BrokerWatchers, as an adapter reports an outage.
type link struct {
	wsrpc.Broker
	cut  atomic.Bool
	drop func(msg []byte) bool // nil, or true for a message lost on its way in

	mu       sync.Mutex
	watchers map[*func(error)]struct{}
}

func newLink(b wsrpc.Broker) *link {
	return &link{Broker: b, watchers: make(map[*func(error)]struct{})}
}

func (l *link) Publish(ctx context.Context, channel string, msg []byte) error {
	if l.cut.Load() {
		return fmt.Errorf("test link: %w", wsrpc.ErrBrokerUnavailable)
	}
	return l.Broker.Publish(ctx, channel, msg)
}

func (l *link) Subscribe(ctx context.Context, channel string, fn func([]byte)) (func(), error) {
	return l.Broker.Subscribe(ctx, channel, func(msg []byte) {
		if !l.cut.Load() && (l.drop == nil || !l.drop(msg)) {
			fn(msg)
		}
	})
}

// set cuts (down) or restores the link; notify tells the watchers.
func (l *link) set(down, notify bool) {
	l.cut.Store(down)
	if !notify {
		return
	}
	var err error
	if down {
		err = fmt.Errorf("test link cut: %w", wsrpc.ErrBrokerUnavailable)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for f := range l.watchers {
		(*f)(err)
	}
}

// watchingLink is a link that is a BrokerWatcher.
type watchingLink struct{ *link }

func (l watchingLink) Watch(fn func(error)) func() {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := &fn
	l.watchers[p] = struct{}{}
	return func() {
		l.mu.Lock()
		delete(l.watchers, p)
		l.mu.Unlock()
	}
}

// limited is a Broker that refuses messages larger than max bytes, as
// PostgreSQL's NOTIFY does (8000).
type limited struct {
	wsrpc.Broker
	max int
}

func (l *limited) Publish(ctx context.Context, channel string, msg []byte) error {
	if len(msg) > l.max {
		return fmt.Errorf("test broker: %d bytes: %w", len(msg), wsrpc.ErrBrokerMessageTooLarge)
	}
	return l.Broker.Publish(ctx, channel, msg)
}

// asyncBroker is a Broker that, unlike MemoryBroker, delivers from a
// goroutine of each subscription's own, after Publish returned, as a
// networked broker does: the nodes must not rely on a message having
// arrived when Publish returns.
type asyncBroker struct {
	mu   sync.Mutex
	subs map[string]map[*asyncSub]struct{}
}

type asyncSub struct {
	ch   chan []byte
	quit chan struct{}
	done chan struct{}
}

func newAsyncBroker() *asyncBroker {
	return &asyncBroker{subs: make(map[string]map[*asyncSub]struct{})}
}

func (b *asyncBroker) Publish(ctx context.Context, channel string, msg []byte) error {
	msg = append([]byte(nil), msg...)
	b.mu.Lock() // held while queueing, so that each channel keeps one order
	defer b.mu.Unlock()
	for s := range b.subs[channel] {
		select {
		case s.ch <- msg:
		case <-s.quit:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (b *asyncBroker) Subscribe(ctx context.Context, channel string, fn func([]byte)) (func(), error) {
	s := &asyncSub{ch: make(chan []byte, 1<<14), quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			select {
			case msg := <-s.ch:
				fn(msg)
			case <-s.quit:
				return
			}
		}
	}()
	b.mu.Lock()
	if b.subs[channel] == nil {
		b.subs[channel] = make(map[*asyncSub]struct{})
	}
	b.subs[channel][s] = struct{}{}
	b.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs[channel], s)
			b.mu.Unlock()
			close(s.quit)
			<-s.done
		})
	}, nil
}

// slowAck is a Broker whose Publish of a call delivers it, then waits for
// an acknowledgement that never comes, until ctx ends, as a networked
// broker's Publish waits for its server: the call runs while its caller's
// Publish has not returned.
type slowAck struct{ wsrpc.Broker }

func (b slowAck) Publish(ctx context.Context, channel string, msg []byte) error {
	if err := b.Broker.Publish(ctx, channel, msg); err != nil {
		return err
	}
	if strings.Contains(string(msg), `"t":"call"`) {
		<-ctx.Done()
		return fmt.Errorf("slowAck: no acknowledgement: %w", ctx.Err())
	}
	return nil
}
