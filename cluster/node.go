package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsrpc/wsrpc"
)

// Options configure a [Node]; nil, and every zero field, means the
// default.
type Options struct {
	// ID names the node in the cluster and in its channel's name: ASCII
	// letters, digits, '-' and '_', at most 64 bytes. Default: 16 random
	// hex digits. Two live nodes must not share one; a node restarted
	// under its id is a new run to the others (its beats say which), who
	// forget at once what the former run had.
	ID string
	// Prefix begins the names of the broker channels; default
	// "wsrpc.cluster". Nodes of one cluster use the same.
	Prefix string
	// PathValue is the path wildcard whose value is a client's id, as in
	// [wsrpc.Server.ConnsByPathValue]; default "client_id". A client is
	// also found by its [wsrpc.Conn.ID].
	PathValue string
	// Heartbeat is the interval between the node's presence beats;
	// default 1 s.
	Heartbeat time.Duration
	// MissedBeats is how many beats in a row the node may miss before the
	// others forget it; default 3. A node that dies without a goodbye is
	// forgotten, and the calls routed to it fail, within
	// (MissedBeats+1)×Heartbeat.
	MissedBeats int
	// CallTimeout bounds a routed call whose ctx has no deadline; default
	// 30 s.
	CallTimeout time.Duration
	// MaxConcurrentCalls bounds the calls this node runs at a time for
	// the other nodes; one more is answered with [wsrpc.ErrTooManyCalls].
	// Default 4096.
	MaxConcurrentCalls int
	// Logger gets the nodes joining and leaving, and the broker's
	// outages; default slog.Default().
	Logger *slog.Logger
	// Trace, if not nil, carries the caller's trace context across the
	// hop, so that the call the owner node makes to the client continues
	// the caller's trace (otelwsrpc.Propagator is one). Nil: routed
	// calls carry none.
	Trace TracePropagator
}

// TracePropagator carries trace context with routed calls: Inject returns
// ctx's W3C traceparent and tracestate ("" for none), which travel with
// the call; on the owner node, Extract returns ctx with the ones that
// arrived, and the call to the client is made with it. It is
// [wsrpc.TracePropagator], which package pubsub takes too.
type TracePropagator = wsrpc.TracePropagator

func (o Options) withDefaults() (Options, error) {
	var errs []error
	if o.ID == "" {
		o.ID = randomHex()
	} else if !goodID(o.ID) {
		errs = append(errs, fmt.Errorf("%w: %q", ErrBadID, o.ID))
	}
	if o.Prefix == "" {
		o.Prefix = "wsrpc.cluster"
	}
	if o.PathValue == "" {
		o.PathValue = "client_id"
	}
	switch {
	case o.Heartbeat < 0:
		errs = append(errs, errors.New("cluster: Options.Heartbeat is negative"))
	case o.Heartbeat == 0:
		o.Heartbeat = time.Second
	}
	switch {
	case o.MissedBeats < 0:
		errs = append(errs, errors.New("cluster: Options.MissedBeats is negative"))
	case o.MissedBeats == 0:
		o.MissedBeats = 3
	}
	switch {
	case o.CallTimeout < 0:
		errs = append(errs, errors.New("cluster: Options.CallTimeout is negative"))
	case o.CallTimeout == 0:
		o.CallTimeout = 30 * time.Second
	}
	switch {
	case o.MaxConcurrentCalls < 0:
		errs = append(errs, errors.New("cluster: Options.MaxConcurrentCalls is negative"))
	case o.MaxConcurrentCalls == 0:
		o.MaxConcurrentCalls = 4096
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, errors.Join(errs...)
}

func randomHex() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func goodID(id string) bool {
	if len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// Node is one server's membership in a cluster: it answers the other
// nodes' questions about its clients, runs the calls they route to its
// clients, and routes its own application's calls ([Node.Call]). Close
// it before closing its Server or its Broker. A Node is safe for
// concurrent use.
type Node struct {
	srv  *wsrpc.Server
	b    wsrpc.Broker
	opts Options
	all  string // the channel every node subscribes to
	ttl  time.Duration
	boot string // this run of the node, in its beats

	ctx     context.Context // the node's lifetime: the calls it runs derive from it
	cancel  context.CancelFunc
	wg      sync.WaitGroup // the calls run for others, and sends
	kick    chan struct{}  // wakes the beat loop for a beat now
	quiet   chan struct{}  // closed to stop the beat loop
	beaten  chan struct{}  // closed when it stopped
	warm    chan struct{}  // closed one Heartbeat after Join: the node knows every node
	hello   atomic.Bool    // the next beat asks the others for theirs
	seq     atomic.Uint64  // call and query ids
	stops   []func()
	unwatch func()

	mu      sync.Mutex // guards the fields below
	closed  bool
	down    bool             // the broker reported its link down
	peers   map[string]*peer // the other live nodes
	owners  map[string]string
	calls   map[string]*pending // routed calls waiting for their reply, by id
	finds   map[string]*lookup  // lookups under way, by client id
	lists   map[string]*listing // Clients under way, by query id
	running map[string]func()   // calls run for other nodes, by caller node and id: their cancel
}

type peer struct {
	seen time.Time
	ttl  time.Duration
	boot string // which run of the node: "" until its first beat
}

// Join makes srv's server a node of the cluster that the nodes sharing b
// form, and returns the Node: it subscribes to the node's channels and
// publishes its first beat, bounded by ctx. The others know it from that
// beat on (once the broker delivered it), and it knows them once they
// answered it with a beat of theirs, a broker round trip later.
func Join(ctx context.Context, srv *wsrpc.Server, b wsrpc.Broker, opts *Options) (*Node, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	n := &Node{
		srv: srv, b: b, opts: o, all: o.Prefix + ".all",
		ttl:     time.Duration(o.MissedBeats) * o.Heartbeat,
		boot:    randomHex(),
		kick:    make(chan struct{}, 1),
		quiet:   make(chan struct{}),
		beaten:  make(chan struct{}),
		warm:    make(chan struct{}),
		peers:   make(map[string]*peer),
		owners:  make(map[string]string),
		calls:   make(map[string]*pending),
		finds:   make(map[string]*lookup),
		lists:   make(map[string]*listing),
		running: make(map[string]func()),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	for _, ch := range []string{n.all, n.channel(o.ID)} {
		stop, err := b.Subscribe(ctx, ch, n.receive)
		if err != nil {
			n.abort()
			return nil, fmt.Errorf("cluster: join: subscribe %s: %w", ch, err)
		}
		n.stops = append(n.stops, stop)
	}
	if w, ok := b.(wsrpc.BrokerWatcher); ok {
		n.unwatch = w.Watch(n.brokerEvent)
	}
	n.hello.Store(true)
	if err := n.beat(ctx); err != nil {
		n.abort()
		return nil, fmt.Errorf("cluster: join: first beat: %w", err)
	}
	go n.beatLoop()
	return n, nil
}

// ID returns the node's id.
func (n *Node) ID() string { return n.opts.ID }

// Nodes returns the ids of the live nodes as this node knows them, its own
// included, sorted.
func (n *Node) Nodes() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := []string{n.opts.ID}
	for id := range n.peers {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// Close says goodbye to the other nodes (whose calls to this node's
// clients fail then with [wsrpc.ErrConnectionLost]), ends the calls it
// runs for them, fails its own routed calls under way with
// [wsrpc.ErrClosed], and returns once all its goroutines ended. It does not
// close the Server or the Broker. Close is idempotent.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	if n.unwatch != nil {
		n.unwatch()
	}
	close(n.quiet) // no beat after the goodbye
	<-n.beaten
	ctx, cancel := context.WithTimeout(context.Background(), n.opts.Heartbeat)
	_ = n.publish(ctx, n.all, &message{T: tBye})
	cancel()
	n.unsubscribe()
	n.cancel()
	n.wg.Wait()
	n.mu.Lock()
	n.failAllLocked(wsrpc.ErrClosed)
	n.mu.Unlock()
	return nil
}

// abort undoes a Join that failed half-way.
func (n *Node) abort() {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	if n.unwatch != nil {
		n.unwatch()
	}
	n.unsubscribe()
	n.cancel()
	n.wg.Wait()
}

func (n *Node) unsubscribe() {
	for _, stop := range n.stops {
		stop()
	}
	n.stops = nil
}

// channel is the name of node id's own channel.
func (n *Node) channel(id string) string { return n.opts.Prefix + ".node." + id }

func (n *Node) newID() string { return strconv.FormatUint(n.seq.Add(1), 36) }

// publish sends m, stamped with the node's id, on channel.
func (n *Node) publish(ctx context.Context, channel string, m *message) error {
	m.Node = n.opts.ID
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return n.b.Publish(ctx, channel, b)
}

// send publishes m to node's channel in a goroutine of its own, bounded
// by the node's time to live, since a Broker's subscription function,
// where most answers are made, must return quickly. Nothing is sent once
// Close began.
func (n *Node) send(node string, m *message) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	n.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), n.ttl)
		defer cancel()
		if err := n.publish(ctx, n.channel(node), m); err != nil {
			n.opts.Logger.Debug("cluster: send failed", "node", node, "type", m.T, "err", err)
		}
	})
}

// receive handles a message from the broker, on either channel.
func (n *Node) receive(raw []byte) {
	var m message
	if err := json.Unmarshal(raw, &m); err != nil || m.Node == "" {
		n.opts.Logger.Debug("cluster: unreadable message", "err", err)
		return
	}
	if m.Node == n.opts.ID {
		return // our own, on the channel every node hears
	}
	switch m.T {
	case tBeat:
		n.heard(&m)
	case tBye:
		n.forget(m.Node, "said goodbye")
	case tFind:
		n.send(m.Node, &message{T: tHave, ID: m.ID, Client: m.Client, Have: n.local(m.Client) != nil})
	case tHave:
		n.answered(&m)
	case tList:
		n.answerList(&m)
	case tClients:
		n.listed(&m)
	case tCall:
		n.serve(&m)
	case tCancel:
		n.mu.Lock()
		f := n.running[m.Node+" "+m.ID]
		n.mu.Unlock()
		if f != nil {
			f()
		}
	case tReply:
		n.replied(&m)
	}
}

// local returns the connection of client id on this node, or nil: the
// newest by the PathValue wildcard, else the one with that Conn.ID.
func (n *Node) local(id string) *wsrpc.Conn {
	if cs := n.srv.ConnsByPathValue(n.opts.PathValue, id); len(cs) > 0 {
		return cs[len(cs)-1]
	}
	return n.srv.Conn(id)
}

// beatLoop publishes the node's beats and forgets the nodes whose beats
// stopped.
func (n *Node) beatLoop() {
	defer close(n.beaten)
	t := time.NewTicker(n.opts.Heartbeat)
	defer t.Stop()
	warm := false
	for {
		select {
		case <-n.quiet:
			return
		case <-n.kick:
		case <-t.C:
			if !warm {
				// Every live node beat at least once since Join, or
				// answered its first beat.
				warm = true
				close(n.warm)
			}
			n.sweep()
		}
		ctx, cancel := context.WithTimeout(context.Background(), n.opts.Heartbeat)
		n.beat(ctx)
		cancel()
	}
}

// beat publishes a beat, which asks the others for theirs after the node
// joined or the broker came back.
func (n *Node) beat(ctx context.Context) error {
	m := &message{T: tBeat, Boot: n.boot, Hello: n.hello.Swap(false), BeatMS: n.opts.Heartbeat.Milliseconds(), TTLMS: n.ttl.Milliseconds()}
	err := n.publish(ctx, n.all, m)
	if err != nil && m.Hello {
		n.hello.Store(true) // ask again with the next one
	}
	return err
}

func (n *Node) isWarm() bool {
	select {
	case <-n.warm:
		return true
	default:
		return false
	}
}

// waitWarm waits until the node knows every node, one Heartbeat after
// Join, bounded by ctx and Close.
func (n *Node) waitWarm(ctx context.Context) error {
	select {
	case <-n.warm:
		return nil
	case <-n.quiet:
		return wsrpc.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// heard records a beat.
func (n *Node) heard(m *message) {
	ttl := time.Duration(m.TTLMS) * time.Millisecond
	if ttl <= 0 {
		ttl = n.ttl
	}
	n.mu.Lock()
	p, known := n.peers[m.Node]
	if known && p.boot != "" && p.boot != m.Boot {
		// The node restarted under the same id (after a SIGKILL, say,
		// before it was forgotten): what its former run had is gone.
		n.mu.Unlock()
		n.forget(m.Node, "restarted")
		n.mu.Lock()
		p, known = n.peers[m.Node]
	}
	if !known {
		p = new(peer)
		n.peers[m.Node] = p
	}
	p.seen, p.ttl, p.boot = time.Now(), ttl, m.Boot
	n.mu.Unlock()
	if !known {
		n.opts.Logger.Debug("cluster: node joined", "node", m.Node)
	}
	if m.Hello {
		n.beatNow()
	}
}

func (n *Node) beatNow() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// sweep forgets the nodes whose beats stopped; not while the broker is
// down, since then no beat arrives from anyone.
func (n *Node) sweep() {
	now := time.Now()
	var dead []string
	n.mu.Lock()
	if !n.down {
		for id, p := range n.peers {
			if now.Sub(p.seen) > p.ttl {
				dead = append(dead, id)
			}
		}
	}
	n.mu.Unlock()
	for _, id := range dead {
		n.forget(id, "stopped beating")
	}
	if len(dead) > 0 {
		// Perhaps this node's own link was cut, unannounced: once it is
		// back, the others' answers to a hello make it know them at once.
		n.hello.Store(true)
	}
}

// forget drops a node: the calls routed to it fail with
// wsrpc.ErrConnectionLost, the lookups and listings stop waiting for it.
func (n *Node) forget(id, why string) {
	n.mu.Lock()
	_, known := n.peers[id]
	delete(n.peers, id)
	for c, o := range n.owners {
		if o == id {
			delete(n.owners, c)
		}
	}
	for cid, p := range n.calls {
		if p.node == id {
			delete(n.calls, cid)
			p.ch <- outcome{err: fmt.Errorf("%w: node %s %s", wsrpc.ErrConnectionLost, id, why)}
		}
	}
	for client, lk := range n.finds {
		lk.noLocked(n, client, id)
	}
	for q, ls := range n.lists {
		ls.doneLocked(n, q, id, true)
	}
	// Its calls here: nobody waits for their answers any more.
	for key, cancel := range n.running {
		if strings.HasPrefix(key, id+" ") {
			cancel()
		}
	}
	n.mu.Unlock()
	if known {
		n.opts.Logger.Debug("cluster: node left", "node", id, "why", why)
	}
}

// brokerEvent follows the broker's link: while it is down, routed calls
// fail at once and those under way fail (their outcome is unknown); once
// it is back, the node beats at once and gives every node a fresh time to
// live, since none could beat meanwhile.
func (n *Node) brokerEvent(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err != nil {
		n.down = true
		n.failAllLocked(fmt.Errorf("%w: %w", wsrpc.ErrConnectionLost, err))
		n.opts.Logger.Warn("cluster: broker link lost", "err", err)
		return
	}
	n.down = false
	now := time.Now()
	for _, p := range n.peers {
		p.seen = now
	}
	n.hello.Store(true)
	n.beatNow()
	n.opts.Logger.Info("cluster: broker link back")
}

// failAllLocked fails every routed call, lookup and listing under way
// with err.
func (n *Node) failAllLocked(err error) {
	for id, p := range n.calls {
		delete(n.calls, id)
		p.ch <- outcome{err: err}
	}
	for client, lk := range n.finds {
		lk.endLocked(n, client, "", err)
	}
	for q, ls := range n.lists {
		ls.endLocked(n, q, err)
	}
}

// unavailableLocked returns the error for a call made while the node is
// closed or the broker down, or nil.
func (n *Node) unavailableLocked() error {
	switch {
	case n.closed:
		return wsrpc.ErrClosed
	case n.down:
		return fmt.Errorf("%w: its link is down", wsrpc.ErrBrokerUnavailable)
	}
	return nil
}
