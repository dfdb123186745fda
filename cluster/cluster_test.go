package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/cluster"
	"github.com/wsrpc/wsrpc/internal/brokertest"
	"github.com/wsrpc/wsrpc/pubsub"
)

// fast are options that forget a silent node within a second.
var fast = &cluster.Options{Heartbeat: 100 * time.Millisecond, MissedBeats: 5}

func TestCallResult(t *testing.T) {
	ns := newCluster(t, pubsub.NewMemoryBroker(), 3, nil)
	cl := dial(t, ns[2], "alice", nil)
	ctx := ctxT(t)
	for i, n := range ns { // from the other nodes, and from alice's own
		sum, err := cluster.Call[int](ctx, n.node, "alice", "add", addArgs{A: 2, B: i})
		if err != nil || sum != 2+i {
			t.Fatalf("from node %d: add = %d, %v; want %d", i, sum, err, 2+i)
		}
	}
	// By its channel id, and through a wsrpc.Caller.
	id := cl.Conn().ID()
	var serverSide string
	for _, c := range ns[2].srv.Conns() {
		serverSide = c.ID()
	}
	who, err := wsrpc.Call[string](ctx, ns[0].node.Client(serverSide), "whoami", nil)
	if err != nil || who != "alice" {
		t.Fatalf("whoami by conn id %s (client side %s) = %q, %v", serverSide, id, who, err)
	}
	var raw json.RawMessage
	if err := ns[1].node.Call(ctx, "alice", "echo", map[string]any{"k": []int{1, 2}}, &raw); err != nil || string(raw) != `{"k":[1,2]}` {
		t.Fatalf("echo = %s, %v", raw, err)
	}
}

func TestCallRemoteError(t *testing.T) {
	ns := newCluster(t, pubsub.NewMemoryBroker(), 2, nil)
	dial(t, ns[1], "bob", nil)
	err := ns[0].node.Call(ctxT(t), "bob", "fail", nil, nil)
	e, ok := errors.AsType[*wsrpc.Error](err)
	if !ok {
		t.Fatalf("err = %v, want a *wsrpc.Error", err)
	}
	if e.Code != 4001 || e.Message != "no funds" || string(e.Data) != `{"balance":3}` {
		t.Fatalf("remote error = %+v (data %s), want code 4001, message and data unchanged", e, e.Data)
	}
	err = ns[0].node.Call(ctxT(t), "bob", "nope", nil, nil)
	if wsrpc.ErrorCode(err) != wsrpc.CodeMethodNotFound {
		t.Fatalf("unknown method: %v, want code %d", err, wsrpc.CodeMethodNotFound)
	}
}

func TestCallDeadlineCarried(t *testing.T) {
	ns := newCluster(t, pubsub.NewMemoryBroker(), 2, nil)
	cm := newMethods()
	dial(t, ns[1], "carol", cm)
	// Long enough for the call to reach the handler on a loaded machine.
	ctx, cancel := context.WithTimeout(ctxT(t), 3*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	sent := time.Now()
	go func() { errc <- ns[0].node.Call(ctx, "carol", "block", nil, nil) }()
	var hctx context.Context
	select {
	case hctx = <-cm.started:
	case err := <-errc:
		t.Fatalf("the call ended (%v) before the client's handler started", err)
	}
	dl, ok := hctx.Deadline()
	if !ok {
		t.Fatal("the client's handler has no deadline")
	}
	// Each hop (node to node, node to client) sends the time left, rounded
	// up to the millisecond, and the receiver counts it from when it got
	// the call: the handler's deadline is the caller's, later by at most
	// the time the call took to reach it and a millisecond a hop.
	if mine, _ := ctx.Deadline(); dl.After(mine.Add(time.Since(sent) + 2*time.Millisecond)) {
		t.Errorf("handler's deadline %v after the caller's %v by more than the call's way to it", dl, mine)
	}
	if err := <-errc; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if err := <-cm.ended; !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		t.Fatalf("handler's ctx ended with %v", err)
	}
}

func TestCallCancelCarried(t *testing.T) {
	checkCancelCarried(t, pubsub.NewMemoryBroker())
}

// checkCancelCarried cancels a routed call to a client of another node,
// on b, while the client's handler runs: the caller gets Canceled, and
// the handler sees its ctx canceled.
func checkCancelCarried(t *testing.T, b wsrpc.Broker) {
	t.Helper()
	ns := newCluster(t, b, 2, nil)
	cm := newMethods()
	dial(t, ns[1], "dave", cm)
	ctx, cancel := context.WithCancel(ctxT(t))
	errc := make(chan error, 1)
	go func() { errc <- ns[0].node.Call(ctx, "dave", "block", nil, nil) }()
	<-cm.started
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want Canceled", err)
	}
	select {
	case err := <-cm.ended:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("handler's ctx ended with %v, want Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client's handler never saw the cancellation")
	}
}

func TestUnknownClient(t *testing.T) {
	ns := newCluster(t, pubsub.NewMemoryBroker(), 3, nil)
	dial(t, ns[1], "erin", nil)
	ctx := ctxT(t)
	err := ns[0].node.Call(ctx, "nobody", "add", addArgs{}, nil)
	if !errors.Is(err, cluster.ErrNoSuchClient) {
		t.Fatalf("err = %v, want ErrNoSuchClient", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the unknown client was reported by a timeout")
	}
	// Alone, a node knows at once.
	alone := newNode(t, pubsub.NewMemoryBroker(), nil)
	if err := alone.node.Call(ctx, "erin", "add", nil, nil); !errors.Is(err, cluster.ErrNoSuchClient) {
		t.Fatalf("alone: err = %v, want ErrNoSuchClient", err)
	}
}

func TestConcurrentCalls(t *testing.T) {
	t.Run("MemoryBroker", func(t *testing.T) { testConcurrentCalls(t, pubsub.NewMemoryBroker()) })
	t.Run("async", func(t *testing.T) { testConcurrentCalls(t, newAsyncBroker()) })
}

func testConcurrentCalls(t *testing.T, b wsrpc.Broker) {
	ns := newCluster(t, b, 3, nil)
	var ids []string
	for i, n := range ns {
		for j := range 3 {
			id := fmt.Sprintf("c%d-%d", i, j)
			dial(t, n, id, nil)
			ids = append(ids, id)
		}
	}
	ctx := ctxT(t)
	const calls = 1000
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for i := range calls {
		wg.Go(func() {
			from, to := ns[i%len(ns)], ids[(i/len(ns))%len(ids)]
			sum, err := cluster.Call[int](ctx, from.node, to, "add", addArgs{A: i, B: 1})
			if err == nil && sum != i+1 {
				err = fmt.Errorf("add(%d, 1) = %d", i, sum)
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
}

func TestOwnerDiesMidCall(t *testing.T) {
	mb := pubsub.NewMemoryBroker()
	a := newNode(t, mb, fast)
	cut := newLink(mb)
	b := newNode(t, cut, fast)
	waitKnown(t, a, b)
	cm := newMethods()
	dial(t, b, "frank", cm)
	ctx := ctxT(t)
	errc := make(chan error, 1)
	go func() { errc <- a.node.Call(ctx, "frank", "block", nil, nil) }()
	<-cm.started
	// b dies without a goodbye: off the broker, its server gone.
	cut.set(true, false)
	b.srv.Close()
	if err := <-errc; !errors.Is(err, wsrpc.ErrConnectionLost) {
		t.Fatalf("err = %v, want ErrConnectionLost", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the call ended by its deadline, not by the owner's death")
	}
	// The registry forgot b, and frank with it.
	waitKnown(t, a)
	if err := a.node.Call(ctx, "frank", "add", addArgs{}, nil); !errors.Is(err, cluster.ErrNoSuchClient) {
		t.Fatalf("after b died: err = %v, want ErrNoSuchClient", err)
	}
}

func TestGoodbyeFailsCallsAtOnce(t *testing.T) {
	ns := newCluster(t, pubsub.NewMemoryBroker(), 2, nil) // 2 s to forget a silent node
	cm := newMethods()
	dial(t, ns[1], "gina", cm)
	ctx := ctxT(t)
	errc := make(chan error, 1)
	go func() { errc <- ns[0].node.Call(ctx, "gina", "block", nil, nil) }()
	<-cm.started
	ns[1].node.Close()
	if err := <-errc; !errors.Is(err, wsrpc.ErrConnectionLost) {
		t.Fatalf("err = %v, want ErrConnectionLost", err)
	}
	if got := ns[0].node.Nodes(); len(got) != 1 {
		t.Fatalf("after the goodbye, nodes = %v", got)
	}
	if err := ns[1].node.Call(ctx, "gina", "add", nil, nil); !errors.Is(err, wsrpc.ErrClosed) {
		t.Fatalf("call on a closed node: %v, want ErrClosed", err)
	}
}

func TestClientReconnectsElsewhere(t *testing.T) {
	ns := newCluster(t, pubsub.NewMemoryBroker(), 3, nil)
	cl := dial(t, ns[0], "hana", nil)
	ctx := ctxT(t)
	if _, err := cluster.Call[int](ctx, ns[2].node, "hana", "add", addArgs{}); err != nil {
		t.Fatal(err) // ns[2] now has hana's place cached: ns[0]
	}
	cl.Close()
	waitFor(t, "hana to leave node 0", func() bool { return len(ns[0].srv.ConnsByPathValue("client_id", "hana")) == 0 })
	dial(t, ns[1], "hana", nil)
	for _, n := range []*node{ns[2], ns[0]} {
		var where []cluster.ClientInfo
		if err := n.node.Call(ctx, "hana", "add", addArgs{A: 1}, nil); err != nil {
			t.Fatalf("from %s after the reconnect: %v", n.node.ID(), err)
		}
		where, err := n.node.Clients(ctx)
		if err != nil || len(where) != 1 || where[0].Node != ns[1].node.ID() {
			t.Fatalf("clients = %+v, %v; want hana on %s", where, err, ns[1].node.ID())
		}
	}
}

func TestClients(t *testing.T) {
	b := &limited{Broker: pubsub.NewMemoryBroker(), max: 8000}
	ns := newCluster(t, b, 3, nil)
	want := map[string]string{} // client id -> node id
	// Enough clients with long ids on node 1 for its list to take
	// several messages: one would be refused (and the list left out).
	for i := range 120 {
		id := fmt.Sprintf("%s-%03d", strings.Repeat("k", 60), i)
		dial(t, ns[1], id, nil)
		want[id] = ns[1].node.ID()
	}
	dial(t, ns[0], "ivan", nil)
	want["ivan"] = ns[0].node.ID()
	dial(t, ns[2], "judy", nil)
	want["judy"] = ns[2].node.ID()
	waitFor(t, "the connections", func() bool { return len(ns[1].srv.Conns()) == 120 })
	for _, n := range ns {
		got, err := n.node.Clients(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("from %s: %d clients, want %d", n.node.ID(), len(got), len(want))
		}
		for _, c := range got {
			if want[c.ClientID] != c.Node || c.ConnID == "" {
				t.Fatalf("from %s: %+v, want it on %s", n.node.ID(), c, want[c.ClientID])
			}
		}
	}
}

func TestMessageTooLarge(t *testing.T) {
	b := &limited{Broker: pubsub.NewMemoryBroker(), max: 8000}
	ns := newCluster(t, b, 2, nil)
	dial(t, ns[1], "kim", nil)
	ctx := ctxT(t)
	err := ns[0].node.Call(ctx, "kim", "echo", map[string]string{"s": strings.Repeat("x", 9000)}, nil)
	if !errors.Is(err, wsrpc.ErrBrokerMessageTooLarge) {
		t.Fatalf("large args: %v, want ErrBrokerMessageTooLarge", err)
	}
	_, err = cluster.Call[string](ctx, ns[0].node, "kim", "big", struct{ N int }{9000})
	if !errors.Is(err, wsrpc.ErrBrokerMessageTooLarge) {
		t.Fatalf("large result: %v, want ErrBrokerMessageTooLarge", err)
	}
	if s, err := cluster.Call[string](ctx, ns[0].node, "kim", "big", struct{ N int }{7000}); err != nil || len(s) != 7000 {
		t.Fatalf("a result within the limit: %d bytes, %v", len(s), err)
	}
}

func TestBrokerOutage(t *testing.T) {
	l := newLink(pubsub.NewMemoryBroker())
	b := watchingLink{l}
	ns := newCluster(t, b, 2, fast)
	cm := newMethods()
	dial(t, ns[1], "leo", cm)
	dial(t, ns[0], "mia", nil)
	ctx := ctxT(t)
	errc := make(chan error, 1)
	go func() { errc <- ns[0].node.Call(ctx, "leo", "block", nil, nil) }()
	<-cm.started

	l.set(true, true)
	if err := <-errc; !errors.Is(err, wsrpc.ErrConnectionLost) || !errors.Is(err, wsrpc.ErrBrokerUnavailable) {
		t.Fatalf("call under way: %v, want ErrConnectionLost and ErrBrokerUnavailable", err)
	}
	if err := ns[0].node.Call(ctx, "leo", "add", nil, nil); !errors.Is(err, wsrpc.ErrBrokerUnavailable) {
		t.Fatalf("during the outage: %v, want ErrBrokerUnavailable", err)
	}
	if _, err := ns[0].node.Clients(ctx); !errors.Is(err, wsrpc.ErrBrokerUnavailable) {
		t.Fatalf("Clients during the outage: %v, want ErrBrokerUnavailable", err)
	}
	if _, err := cluster.Call[int](ctx, ns[0].node, "mia", "add", addArgs{A: 1}); err != nil {
		t.Fatalf("a local client during the outage: %v", err)
	}

	l.set(false, true)
	if sum, err := cluster.Call[int](ctx, ns[0].node, "leo", "add", addArgs{A: 4, B: 5}); err != nil || sum != 9 {
		t.Fatalf("after the outage: %d, %v", sum, err)
	}
}

func TestOptions(t *testing.T) {
	srv, err := wsrpc.NewServer(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	b := pubsub.NewMemoryBroker()
	_, err = cluster.Join(ctxT(t), srv, b, &cluster.Options{ID: "a.b", Heartbeat: -1, MissedBeats: -1})
	if !errors.Is(err, cluster.ErrBadID) || !strings.Contains(err.Error(), "Heartbeat") || !strings.Contains(err.Error(), "MissedBeats") {
		t.Fatalf("err = %v, want every bad field", err)
	}
	n, err := cluster.Join(ctxT(t), srv, b, &cluster.Options{ID: "node-1", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if n.ID() != "node-1" {
		t.Fatalf("ID = %q", n.ID())
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := n.Call(ctxT(t), "x", "m", []int{1}, nil); err == nil || errors.Is(err, wsrpc.ErrClosed) {
		t.Fatalf("args not an object: %v, want it refused before anything else", err)
	}
}

// TestRunCluster runs the conformance suite's cluster test on
// MemoryBroker, one shared by the three nodes.
func TestRunCluster(t *testing.T) {
	b := pubsub.NewMemoryBroker()
	brokertest.RunCluster(t, func(testing.TB) wsrpc.Broker { return b })
}

// TestRunClusterAsync runs it on a broker that delivers asynchronously.
func TestRunClusterAsync(t *testing.T) {
	b := newAsyncBroker()
	brokertest.RunCluster(t, func(testing.TB) wsrpc.Broker { return b })
}

// TestLostQuestions: the broker loses questions to one node (at most
// once allows it). A lookup asks again until the node answers: it says
// "no such client" only once every node said so. Clients, when a list
// does not come, returns the others' and says which is missing.
func TestLostQuestions(t *testing.T) {
	mb := pubsub.NewMemoryBroker()
	a := newNode(t, mb, fast)
	lossy := newLink(mb)
	var finds atomic.Int32
	lossy.drop = func(msg []byte) bool {
		if strings.Contains(string(msg), `"t":"find"`) {
			return finds.Add(1) <= 2 // the first question and its first repeat
		}
		return strings.Contains(string(msg), `"t":"list"`)
	}
	c := newNode(t, lossy, fast)
	waitKnown(t, a, c)
	dial(t, a, "nina", nil)
	dial(t, c, "omar", nil)
	ctx := ctxT(t)
	if sum, err := cluster.Call[int](ctx, a.node, "omar", "add", addArgs{A: 2, B: 2}); err != nil || sum != 4 {
		t.Fatalf("omar, on the node that missed two questions: %d, %v", sum, err)
	}
	if err := a.node.Call(ctx, "nobody", "add", nil, nil); !errors.Is(err, cluster.ErrNoSuchClient) || ctx.Err() != nil {
		t.Fatalf("err = %v, want ErrNoSuchClient before the deadline", err)
	}
	got, err := a.node.Clients(ctx)
	if !errors.Is(err, cluster.ErrPartial) || !strings.Contains(err.Error(), c.node.ID()) {
		t.Fatalf("Clients: %v, want ErrPartial naming %s", err, c.node.ID())
	}
	if len(got) != 1 || got[0].ClientID != "nina" {
		t.Fatalf("Clients = %+v; want nina, from the nodes that answered", got)
	}
	// The other way round nothing is lost.
	if sum, err := cluster.Call[int](ctx, c.node, "nina", "add", addArgs{A: 1, B: 1}); err != nil || sum != 2 {
		t.Fatalf("from c: %d, %v", sum, err)
	}
}

// TestCallerDies: the node that routed a call dies mid-call; the owner
// forgets it and cancels the call, so the client's handler sees its ctx
// canceled long before the call's deadline.
func TestCallerDies(t *testing.T) {
	mb := pubsub.NewMemoryBroker()
	owner := newNode(t, mb, fast)
	cut := newLink(mb)
	caller := newNode(t, cut, fast)
	waitKnown(t, owner, caller)
	cm := newMethods()
	dial(t, owner, "pia", cm)
	ctx, cancel := context.WithTimeout(ctxT(t), 25*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- caller.node.Call(ctx, "pia", "block", nil, nil) }()
	<-cm.started
	cut.set(true, false)
	if err := <-cm.ended; !errors.Is(err, context.Canceled) {
		t.Fatalf("the handler's ctx ended with %v, want Canceled", err)
	}
	cancel()
	<-errc
}

// TestJoinBrokerDown: Join fails, wrapping the broker's error, when the
// broker cannot take the node's first beat.
func TestJoinBrokerDown(t *testing.T) {
	l := newLink(pubsub.NewMemoryBroker())
	l.set(true, false)
	srv, err := wsrpc.NewServer(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, err := cluster.Join(ctxT(t), srv, watchingLink{l}, &cluster.Options{Logger: quiet()}); !errors.Is(err, wsrpc.ErrBrokerUnavailable) {
		t.Fatalf("Join: %v, want ErrBrokerUnavailable", err)
	}
}

// TestOwnerBusy: beyond MaxConcurrentCalls the owner refuses a routed
// call with wsrpc.ErrTooManyCalls, and runs the next once one ended.
func TestOwnerBusy(t *testing.T) {
	ns := newCluster(t, pubsub.NewMemoryBroker(), 2, &cluster.Options{MaxConcurrentCalls: 1})
	cm := newMethods()
	dial(t, ns[1], "quinn", cm)
	ctx, cancel := context.WithCancel(ctxT(t))
	errc := make(chan error, 1)
	go func() { errc <- ns[0].node.Call(ctx, "quinn", "block", nil, nil) }()
	<-cm.started
	if err := ns[0].node.Call(ctxT(t), "quinn", "add", addArgs{}, nil); !errors.Is(err, wsrpc.ErrTooManyCalls) {
		t.Fatalf("second call: %v, want ErrTooManyCalls", err)
	}
	cancel()
	<-errc
	<-cm.ended
	waitFor(t, "the owner to run calls again", func() bool {
		return ns[0].node.Call(ctxT(t), "quinn", "add", addArgs{}, nil) == nil
	})
}

// TestOwnerRestartsUnderItsID: the owner dies mid-call and a new run of
// it, with the same Options.ID, joins before the old one was forgotten;
// the call fails with ErrConnectionLost rather than waiting for its
// deadline (the new run beats on, under the same id).
func TestOwnerRestartsUnderItsID(t *testing.T) {
	mb := pubsub.NewMemoryBroker()
	a := newNode(t, mb, nil) // 2 s to forget a silent node
	cut := newLink(mb)
	b := newNode(t, cut, &cluster.Options{ID: "b"})
	waitKnown(t, a, b)
	cm := newMethods()
	dial(t, b, "rita", cm)
	ctx, cancel := context.WithTimeout(ctxT(t), 20*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- a.node.Call(ctx, "rita", "block", nil, nil) }()
	<-cm.started
	cut.set(true, false)
	b.srv.Close()
	b2 := newNode(t, mb, &cluster.Options{ID: "b"})
	if err := <-errc; !errors.Is(err, wsrpc.ErrConnectionLost) || ctx.Err() != nil {
		t.Fatalf("err = %v, want ErrConnectionLost before the deadline", err)
	}
	dial(t, b2, "rita", nil)
	if _, err := cluster.Call[int](ctx, a.node, "rita", "add", addArgs{}); err != nil {
		t.Fatalf("rita on b's new run: %v", err)
	}
}

// TestCallRightAfterJoin: a node that just joined, before it heard any
// other node, finds a client connected to an older one.
func TestCallRightAfterJoin(t *testing.T) {
	for name, b := range map[string]wsrpc.Broker{"MemoryBroker": pubsub.NewMemoryBroker(), "async": newAsyncBroker()} {
		t.Run(name, func(t *testing.T) {
			old := newNode(t, b, nil)
			dial(t, old, "sam", nil)
			fresh := newNode(t, b, nil)
			if sum, err := cluster.Call[int](ctxT(t), fresh.node, "sam", "add", addArgs{A: 1, B: 2}); err != nil || sum != 3 {
				t.Fatalf("add = %d, %v", sum, err)
			}
			got, err := newNode(t, b, nil).node.Clients(ctxT(t))
			if err != nil || len(got) != 1 || got[0].ClientID != "sam" {
				t.Fatalf("Clients right after Join = %+v, %v", got, err)
			}
		})
	}
}

// TestCancelWhilePublishing: the caller's ctx ends while the Publish of
// its call still waits for the broker's acknowledgement, after the call
// arrived; the cancellation reaches the client all the same (found with
// natsbroker, whose Publish waits for the server's PONG).
func TestCancelWhilePublishing(t *testing.T) {
	checkCancelCarried(t, slowAck{pubsub.NewMemoryBroker()})
}

// TestWarmUpBounded: in a node's first Heartbeat, when it may not know
// every node yet, Clients and a call to a client no node has reported
// wait for the end of it, bounded by their ctx, and by Close, which ends
// the wait with wsrpc.ErrClosed.
func TestWarmUpBounded(t *testing.T) {
	n := newNode(t, pubsub.NewMemoryBroker(), &cluster.Options{Heartbeat: time.Hour}) // warm in an hour
	short, cancel := context.WithTimeout(ctxT(t), 50*time.Millisecond)
	defer cancel()
	if _, err := n.node.Clients(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Clients while warming up, past its ctx: %v, want context.DeadlineExceeded", err)
	}
	short, cancel = context.WithTimeout(ctxT(t), 50*time.Millisecond)
	defer cancel()
	if err := n.node.Call(short, "nobody", "add", addArgs{}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a call to an unknown client while warming up, past its ctx: %v, want context.DeadlineExceeded", err)
	}

	errs := make(chan error, 2)
	go func() { _, err := n.node.Clients(ctxT(t)); errs <- err }()
	go func() { errs <- n.node.Call(ctxT(t), "nobody", "add", addArgs{}, nil) }()
	// Close ends both waits, whether they began before it or not.
	n.node.Close()
	for range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, wsrpc.ErrClosed) {
				t.Errorf("a wait for the warm-up ended by Close: %v, want wsrpc.ErrClosed", err)
			}
		case <-ctxT(t).Done():
			t.Fatal("a wait for the warm-up outlived Close")
		}
	}
}
