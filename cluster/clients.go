package cluster

import (
	"cmp"
	"context"
	"slices"
)

// ClientInfo is one client connection in the cluster.
type ClientInfo struct {
	Node     string // the id of the node it is connected to
	ClientID string // the value of its PathValue wildcard; "" if its path had none
	ConnID   string // its wsrpc.Conn.ID
}

// listing is a Clients call waiting for the live nodes' lists.
type listing struct {
	waiting map[string]bool         // the nodes whose list is not complete yet
	got     map[string][]ClientInfo // the lists, by node
	done    chan struct{}           // closed with err set, or got complete
	err     error
}

// Clients returns every client connection of the cluster, sorted by node
// and client id: this node's own, and those that every other live node
// reports when asked, now. It waits for each live node's whole list, or
// for that node to be forgotten, bounded by ctx.
//
// Staleness: each node's list is taken when it answers, so the result is
// at most one broker round trip old, except that a node that joined less
// than a broker round trip ago may be missing, and a node that died
// without a goodbye is waited for (and then left out) until it is
// forgotten, within (MissedBeats+1)×Heartbeat.
func (n *Node) Clients(ctx context.Context) ([]ClientInfo, error) {
	out := n.localClients()
	n.mu.Lock()
	if err := n.unavailableLocked(); err != nil {
		n.mu.Unlock()
		return nil, err
	}
	q := n.newID()
	ls := &listing{waiting: make(map[string]bool, len(n.peers)), got: make(map[string][]ClientInfo), done: make(chan struct{})}
	for id := range n.peers {
		ls.waiting[id] = true
	}
	if len(ls.waiting) == 0 {
		n.mu.Unlock()
		return sortClients(out), nil
	}
	n.lists[q] = ls
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.lists, q)
		n.mu.Unlock()
	}()
	if err := n.publish(ctx, n.all, &message{T: tList, ID: q}); err != nil {
		return nil, err
	}
	select {
	case <-ls.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if ls.err != nil {
		return nil, ls.err
	}
	for _, l := range ls.got {
		out = append(out, l...)
	}
	return sortClients(out), nil
}

func sortClients(out []ClientInfo) []ClientInfo {
	slices.SortFunc(out, func(a, b ClientInfo) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.ClientID, b.ClientID), cmp.Compare(a.ConnID, b.ConnID))
	})
	return out
}

func (n *Node) localClients() []ClientInfo {
	conns := n.srv.Conns()
	out := make([]ClientInfo, 0, len(conns))
	for _, c := range conns {
		out = append(out, ClientInfo{Node: n.opts.ID, ClientID: c.PathValue(n.opts.PathValue), ConnID: c.ID()})
	}
	return out
}

// answerList sends this node's clients to the asker, in chunks of at most
// chunkBytes of entries, in order on the asker's channel.
func (n *Node) answerList(m *message) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	asker, q := m.Node, m.ID
	n.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), n.ttl)
		defer cancel()
		var chunk []entry
		size := 0
		flush := func(more bool) bool {
			err := n.publish(ctx, n.channel(asker), &message{T: tClients, ID: q, Clients: chunk, More: more})
			chunk, size = chunk[:0], 0
			if err != nil {
				n.opts.Logger.Debug("cluster: client list not sent", "node", asker, "err", err)
			}
			return err == nil
		}
		for _, c := range n.localClients() {
			e := entry{Client: c.ClientID, Conn: c.ConnID}
			sz := len(e.Client) + len(e.Conn) + 16
			if size+sz > chunkBytes && len(chunk) > 0 && !flush(true) {
				return
			}
			chunk = append(chunk, e)
			size += sz
		}
		flush(false)
	})
}

// listed records a chunk of a node's list.
func (n *Node) listed(m *message) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ls := n.lists[m.ID]
	if ls == nil || !ls.waiting[m.Node] {
		return
	}
	for _, e := range m.Clients {
		ls.got[m.Node] = append(ls.got[m.Node], ClientInfo{Node: m.Node, ClientID: e.Client, ConnID: e.Conn})
	}
	if !m.More {
		ls.doneLocked(n, m.ID, m.Node, false)
	}
}

// doneLocked records that node's list is complete, or that node is gone
// (its partial list is dropped).
func (ls *listing) doneLocked(n *Node, q, node string, gone bool) {
	if !ls.waiting[node] {
		if gone {
			delete(ls.got, node)
		}
		return
	}
	delete(ls.waiting, node)
	if gone {
		delete(ls.got, node)
	}
	if len(ls.waiting) == 0 {
		ls.endLocked(n, q, nil)
	}
}

// endLocked ends the listing, once.
func (ls *listing) endLocked(n *Node, q string, err error) {
	if n.lists[q] != ls {
		return
	}
	delete(n.lists, q)
	ls.err = err
	close(ls.done)
}
