package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/wsrpc/wsrpc"
)

// Call calls method on the client whose id is clientID (the value of its
// connection's PathValue wildcard, or its [wsrpc.Conn.ID]), on whichever
// node it is connected to, with keyword arguments args (as for
// [wsrpc.Conn.Call]: a struct, a map, a json.RawMessage object, or nil),
// and decodes the result into result (a pointer, or nil).
//
// A client connected to this node is called directly. Otherwise the call
// goes to the node that has the client, and only there. ctx bounds the
// whole call; its time left travels to that node, which calls the client
// with it, and when ctx ends first, a cancellation follows, so the
// client's handler sees its ctx canceled. Without a deadline,
// [Options].CallTimeout applies.
//
// The error is nil, or wraps: the client's *[wsrpc.Error] unchanged (use
// [errors.As]); [ErrNoSuchClient] at once when no live node has the
// client; [wsrpc.ErrConnectionLost] when the client's connection or its
// node went away mid-call (the call may have run); ctx's error;
// [wsrpc.ErrBrokerUnavailable] when the broker cannot be reached;
// [wsrpc.ErrBrokerMessageTooLarge] when the arguments or the result are
// larger than the broker carries; [wsrpc.ErrTooManyCalls] when the
// client's node runs [Options].MaxConcurrentCalls routed calls already;
// [wsrpc.ErrClosed] once the Node is closed.
func (n *Node) Call(ctx context.Context, clientID, method string, args, result any) error {
	raw, err := encodeArgs(args)
	if err != nil {
		return callErr(method, clientID, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.opts.CallTimeout)
		defer cancel()
	}
	for tries := 0; ; tries++ {
		if n.isClosed() {
			return callErr(method, clientID, wsrpc.ErrClosed)
		}
		if c := n.local(clientID); c != nil {
			var a any
			if raw != nil {
				a = raw
			}
			if err := c.Call(ctx, method, a, result); err != nil {
				return callErr(method, clientID, err)
			}
			return nil
		}
		owner, err := n.owner(ctx, clientID)
		if err != nil {
			return callErr(method, clientID, err)
		}
		r, err := n.roundTrip(ctx, owner, clientID, method, raw)
		if errors.Is(err, errNotHere) {
			n.uncache(clientID, owner)
			if tries < 3 {
				continue
			}
			err = ErrNoSuchClient
		}
		if err != nil {
			return callErr(method, clientID, err)
		}
		if result == nil {
			return nil
		}
		if rm, ok := result.(*json.RawMessage); ok {
			*rm = append((*rm)[:0], r...)
			return nil
		}
		if err := json.Unmarshal(r, result); err != nil {
			return callErr(method, clientID, fmt.Errorf("decode result: %w", err))
		}
		return nil
	}
}

// Call calls method on client clientID wherever it is connected, as
// [Node.Call] does, and returns the result decoded as R.
func Call[R any](ctx context.Context, n *Node, clientID, method string, args any) (R, error) {
	var r R
	err := n.Call(ctx, clientID, method, args, &r)
	return r, err
}

// Client returns a [wsrpc.Caller] whose calls go to client clientID
// through n, so that wsrpc.Call works with it:
//
//	sum, err := wsrpc.Call[int](ctx, node.Client("alice"), "add", args)
func (n *Node) Client(clientID string) wsrpc.Caller { return clientCaller{n, clientID} }

type clientCaller struct {
	n  *Node
	id string
}

func (c clientCaller) Call(ctx context.Context, method string, args, result any) error {
	return c.n.Call(ctx, c.id, method, args, result)
}

func callErr(method, client string, err error) error {
	return fmt.Errorf("cluster: call %q on client %q: %w", method, client, err)
}

// encodeArgs turns args into a JSON object, or nil for none.
func encodeArgs(args any) (json.RawMessage, error) {
	var b []byte
	switch v := args.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		b = v
	default:
		var err error
		if b, err = json.Marshal(args); err != nil {
			return nil, fmt.Errorf("encode args: %w", err)
		}
	}
	switch t := bytes.TrimLeft(b, " \t\r\n"); {
	case len(t) > 0 && t[0] == '{':
		return b, nil
	case string(t) == "null":
		return nil, nil
	}
	return nil, errors.New("args: not a JSON object")
}

// maxCached bounds the cache of where clients were found.
const maxCached = 1 << 16

// lookup is a question "who has client X?" to every live node; the
// callers that need the answer meanwhile wait for the same one.
type lookup struct {
	q       string
	waiting map[string]bool // the nodes that did not answer yet
	done    chan struct{}   // closed with owner or err set
	timer   *time.Timer     // asks again when an answer was lost
	owner   string
	err     error
}

// owner returns the node that has client, from the cache or by asking.
// In the node's first Heartbeat, when it may not know every node yet, "no
// node has it" waits for the end of that Heartbeat and asks again.
func (n *Node) owner(ctx context.Context, client string) (string, error) {
	for {
		warm := n.isWarm()
		o, err := n.ask(ctx, client)
		if warm || !errors.Is(err, ErrNoSuchClient) {
			return o, err
		}
		if err := n.waitWarm(ctx); err != nil {
			return "", err
		}
	}
}

// ask is owner without the wait.
func (n *Node) ask(ctx context.Context, client string) (string, error) {
	n.mu.Lock()
	if err := n.unavailableLocked(); err != nil {
		n.mu.Unlock()
		return "", err
	}
	if o, ok := n.owners[client]; ok && n.peers[o] != nil {
		n.mu.Unlock()
		return o, nil
	}
	lk := n.finds[client]
	start := lk == nil
	if start {
		if len(n.peers) == 0 {
			n.mu.Unlock()
			return "", ErrNoSuchClient
		}
		lk = &lookup{q: n.newID(), waiting: make(map[string]bool, len(n.peers)), done: make(chan struct{})}
		for id := range n.peers {
			lk.waiting[id] = true
		}
		n.finds[client] = lk
		// The broker delivers at most once: the nodes that did not
		// answer within a time to live are asked again (the others
		// ignore it), until they answer or are forgotten.
		lk.timer = time.AfterFunc(n.ttl, func() { n.askAgain(client, lk) })
	}
	n.mu.Unlock()
	if start {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.ttl)
		err := n.publish(pctx, n.all, &message{T: tFind, ID: lk.q, Client: client})
		cancel()
		if err != nil {
			n.mu.Lock()
			lk.endLocked(n, client, "", err)
			n.mu.Unlock()
		}
	}
	select {
	case <-lk.done:
		return lk.owner, lk.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// askAgain publishes lk's question again, once more within a time to
// live, while it waits for answers.
func (n *Node) askAgain(client string, lk *lookup) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.finds[client] != lk || n.closed {
		return
	}
	lk.timer.Reset(n.ttl)
	n.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), n.ttl)
		defer cancel()
		if err := n.publish(ctx, n.all, &message{T: tFind, ID: lk.q, Client: client}); err != nil {
			n.mu.Lock()
			lk.endLocked(n, client, "", err)
			n.mu.Unlock()
		}
	})
}

// endLocked ends the lookup, once.
func (lk *lookup) endLocked(n *Node, client, owner string, err error) {
	if n.finds[client] != lk {
		return
	}
	delete(n.finds, client)
	lk.timer.Stop()
	lk.owner, lk.err = owner, err
	if owner != "" {
		if len(n.owners) >= maxCached {
			for c := range n.owners { // any one: the cache only saves a lookup
				delete(n.owners, c)
				break
			}
		}
		n.owners[client] = owner
	}
	close(lk.done)
}

// noLocked records that node has no such client (it said so, or it is
// gone).
func (lk *lookup) noLocked(n *Node, client, node string) {
	delete(lk.waiting, node)
	if len(lk.waiting) == 0 {
		lk.endLocked(n, client, "", ErrNoSuchClient)
	}
}

// answered handles an answer to a lookup.
func (n *Node) answered(m *message) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if m.Have && n.peers[m.Node] == nil {
		// A node whose first beat we have not heard yet: alive, then.
		n.peers[m.Node] = &peer{seen: time.Now(), ttl: n.ttl}
	}
	lk := n.finds[m.Client]
	if lk == nil || lk.q != m.ID {
		return
	}
	if m.Have {
		lk.endLocked(n, m.Client, m.Node, nil)
	} else {
		lk.noLocked(n, m.Client, m.Node)
	}
}

// uncache forgets that client was on node.
func (n *Node) uncache(client, node string) {
	n.mu.Lock()
	if n.owners[client] == node {
		delete(n.owners, client)
	}
	n.mu.Unlock()
}

// pending is a routed call waiting for its reply.
type pending struct {
	node string
	ch   chan outcome // one slot: whoever takes the call from Node.calls sends once
}

type outcome struct {
	m   *message
	err error
}

// roundTrip sends the call to owner and returns its raw result.
func (n *Node) roundTrip(ctx context.Context, owner, client, method string, params json.RawMessage) (json.RawMessage, error) {
	p := &pending{node: owner, ch: make(chan outcome, 1)}
	n.mu.Lock()
	if err := n.unavailableLocked(); err != nil {
		n.mu.Unlock()
		return nil, err
	}
	if n.peers[owner] == nil {
		n.mu.Unlock()
		return nil, errNotHere // forgotten meanwhile: look again
	}
	id := n.newID()
	n.calls[id] = p
	n.mu.Unlock()

	m := &message{T: tCall, ID: id, Client: client, Method: method, Params: params}
	if dl, ok := ctx.Deadline(); ok {
		m.TimeoutMS = max(1, int64((time.Until(dl)+time.Millisecond-1)/time.Millisecond))
	}
	if n.opts.Trace != nil {
		m.TraceP, m.TraceS = n.opts.Trace.Inject(ctx)
	}
	if err := n.publish(ctx, n.channel(owner), m); err != nil {
		// Publish may fail after the broker took the message (a
		// networked broker waits for its server's acknowledgement,
		// bounded by ctx): unless it was refused outright, the call may
		// be running, so cancel it.
		if n.take(id) && !errors.Is(err, wsrpc.ErrBrokerMessageTooLarge) {
			n.send(owner, &message{T: tCancel, ID: id})
		}
		return nil, err
	}
	select {
	case o := <-p.ch:
		if o.err != nil {
			return nil, o.err
		}
		return outcomeResult(o.m)
	case <-ctx.Done():
		if n.take(id) {
			n.send(owner, &message{T: tCancel, ID: id})
		}
		return nil, ctx.Err()
	}
}

func (n *Node) isClosed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

// take removes call id from the pending calls, and reports whether it was
// there.
func (n *Node) take(id string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.calls[id]
	delete(n.calls, id)
	return ok
}

// replied delivers a reply to its call.
func (n *Node) replied(m *message) {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.calls[m.ID]
	if p == nil || p.node != m.Node {
		return // given up, or not from the node we asked
	}
	delete(n.calls, m.ID)
	p.ch <- outcome{m: m}
}

// outcomeResult turns a reply into the call's result or error.
func outcomeResult(m *message) (json.RawMessage, error) {
	if m.Error != nil {
		return nil, m.Error
	}
	on := func(err error) error {
		if m.Text == "" {
			return fmt.Errorf("%w (on node %s)", err, m.Node)
		}
		return fmt.Errorf("%w (on node %s: %s)", err, m.Node, m.Text)
	}
	switch m.Fail {
	case "":
		if m.Result == nil {
			return json.RawMessage("null"), nil
		}
		return m.Result, nil
	case failNotHere:
		return nil, errNotHere
	case failLost, failClosed:
		return nil, on(wsrpc.ErrConnectionLost)
	case failDeadline:
		return nil, on(context.DeadlineExceeded)
	case failCanceled:
		return nil, on(context.Canceled)
	case failTooLarge:
		return nil, on(wsrpc.ErrBrokerMessageTooLarge)
	}
	return nil, on(errors.New("call failed"))
}

// serve runs a call another node routed here, in a goroutine of its own,
// and sends the reply back.
func (n *Node) serve(m *message) {
	c := n.local(m.Client)
	if c == nil {
		n.send(m.Node, &message{T: tReply, ID: m.ID, Fail: failNotHere})
		return
	}
	timeout := n.opts.CallTimeout
	if m.TimeoutMS > 0 {
		timeout = time.Duration(m.TimeoutMS) * time.Millisecond
	}
	key := m.Node + " " + m.ID
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	if len(n.running) >= n.opts.MaxConcurrentCalls {
		n.mu.Unlock()
		e := &wsrpc.Error{Code: wsrpc.CodeServerError, Message: "too many calls in flight"}
		n.send(m.Node, &message{T: tReply, ID: m.ID, Error: e})
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, timeout)
	if n.opts.Trace != nil && m.TraceP != "" {
		ctx = n.opts.Trace.Extract(ctx, m.TraceP, m.TraceS)
	}
	n.running[key] = cancel
	n.mu.Unlock()
	n.wg.Go(func() {
		defer func() {
			n.mu.Lock()
			delete(n.running, key)
			n.mu.Unlock()
			cancel()
		}()
		var args any
		if len(m.Params) > 0 {
			args = m.Params
		}
		var raw json.RawMessage
		err := c.Call(ctx, m.Method, args, &raw)
		r := &message{T: tReply, ID: m.ID}
		if err == nil {
			r.Result = raw
		} else {
			n.failure(ctx, r, err)
		}
		pctx, pcancel := context.WithTimeout(context.Background(), n.ttl)
		defer pcancel()
		err = n.publish(pctx, n.channel(m.Node), r)
		if errors.Is(err, wsrpc.ErrBrokerMessageTooLarge) {
			r = &message{T: tReply, ID: m.ID, Fail: failTooLarge, Text: "the result is larger than the broker carries"}
			err = n.publish(pctx, n.channel(m.Node), r)
		}
		if err != nil {
			n.opts.Logger.Debug("cluster: reply not sent", "node", m.Node, "method", m.Method, "err", err)
		}
	})
}

// failure puts in r why the client's call failed on this node.
func (n *Node) failure(ctx context.Context, r *message, err error) {
	if e, ok := errors.AsType[*wsrpc.Error](err); ok {
		r.Error = e
		return
	}
	r.Text = err.Error()
	switch {
	case n.ctx.Err() != nil:
		r.Fail = failClosed
	case errors.Is(err, context.DeadlineExceeded):
		r.Fail = failDeadline
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		r.Fail = failCanceled
	case errors.Is(err, wsrpc.ErrConnectionLost), errors.Is(err, wsrpc.ErrClosed):
		r.Fail = failLost
	default:
		r.Fail = failOther
	}
}
