// Package cluster routes calls to a client connected to any node of a
// cluster of wsrpc servers, over any [wsrpc.Broker]: application code on
// one node calls a method on a client by its id, and the call runs on the
// node that holds the client's connection, with the same result, errors,
// deadline and cancellation as a call on a local [wsrpc.Conn].
//
// Each node [Join]s with its [wsrpc.Server] and a Broker that the nodes
// share. It uses only Publish and Subscribe, on two kinds of channel:
//
//   - PREFIX.all, which every node subscribes to: presence beats (the
//     node id, its beat interval and how long it counts as alive
//     without one), goodbyes, and the questions asked of every node
//     ("who has client X?", "which clients do you have?").
//   - PREFIX.node.ID, one per node: the answers to those questions, the
//     calls routed to that node, their cancellations and their replies.
//
// A node is alive while its beats arrive: the others forget it when none
// came for its time to live (by default 3 beats of 1 s), as they do at
// once when it says goodbye (Close). Nothing is stored in the broker, so a
// node that dies without a word (SIGKILL) leaves nothing behind once it
// is forgotten. The calls a node routed to a node it forgets fail with
// [wsrpc.ErrConnectionLost], and the calls it runs for a node it forgets
// are canceled.
//
// To find a client, a node first looks at its own server, then at its
// cache of where clients were found, then asks every node. The first node
// that has the client wins; when every live node said it has none, the
// call fails at once with [ErrNoSuchClient]. (The broker delivers at most
// once: the nodes whose answer did not come within MissedBeats×Heartbeat
// are asked again, until they answer or are forgotten. A node that joined
// less than a Heartbeat ago may not know every node yet: then "none" waits
// for the end of that Heartbeat, and the node asks again.) A cached node that no longer
// has the client (it disconnected, or reconnected to another node) says
// so instead of running the call: the cache entry goes and the node asks
// again, so a reconnected client is found where it is now.
//
// A client is found as soon as its Dial (or reconnect) has returned: its
// node's Server writes the upgrade response once the connection is in its
// indexes.
//
// Every message is small (a few hundred bytes plus a call's arguments or
// result), since PostgreSQL's NOTIFY carries at most 8000 bytes: client
// lists travel in chunks, and a call whose arguments or result the broker
// refuses as too large fails with an error wrapping
// [wsrpc.ErrBrokerMessageTooLarge].
package cluster
