package cluster

import (
	"encoding/json"

	"github.com/wsrpc/wsrpc"
)

// Message types.
const (
	tBeat    = "beat"    // on all: a node is alive
	tBye     = "bye"     // on all: a node leaves
	tFind    = "find"    // on all: who has Client? (ID: the query)
	tList    = "list"    // on all: which clients have you? (ID: the query)
	tHave    = "have"    // to the asker: the answer to find (Have)
	tClients = "clients" // to the asker: a chunk of the answer to list (More: others follow)
	tCall    = "call"    // to the owner: run Method on Client (ID: the call)
	tCancel  = "cancel"  // to the owner: the caller of call ID gave up
	tReply   = "reply"   // to the caller: the outcome of call ID
)

// Why a routed call failed on its owner node, other than by the client's
// *wsrpc.Error (message.Fail).
const (
	failNotHere  = "not_here" // the node no longer has the client; the call did not run
	failLost     = "lost"     // the client's connection ended mid-call
	failClosed   = "closed"   // the owner node is closing
	failDeadline = "deadline" // the call's time ran out on the owner
	failCanceled = "canceled" // the caller's cancel arrived
	failTooLarge = "too_large"
	failOther    = "error"
)

// message is every message the nodes exchange, as JSON: each type uses a
// few of the fields.
type message struct {
	T         string          `json:"t"`
	Node      string          `json:"node"` // the sender
	ID        string          `json:"id,omitempty"`
	Client    string          `json:"client,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	TimeoutMS int64           `json:"timeout_ms,omitempty"` // the time left to the caller
	TraceP    string          `json:"tp,omitempty"`         // the caller's traceparent (Options.Trace)
	TraceS    string          `json:"ts,omitempty"`         // and tracestate
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *wsrpc.Error    `json:"error,omitempty"`
	Fail      string          `json:"fail,omitempty"`
	Text      string          `json:"text,omitempty"`
	Have      bool            `json:"have,omitempty"`
	More      bool            `json:"more,omitempty"`
	Hello     bool            `json:"hello,omitempty"`   // a beat from a node just (re)joined: answer with a beat
	BeatMS    int64           `json:"beat_ms,omitempty"` // the sender's beat interval
	TTLMS     int64           `json:"ttl_ms,omitempty"`  // how long it counts as alive without a beat
	Boot      string          `json:"boot,omitempty"`    // which run of the sender, in beats
	Clients   []entry         `json:"clients,omitempty"`
}

// entry is one connection in an answer to list.
type entry struct {
	Client string `json:"c,omitempty"` // its client id path value
	Conn   string `json:"id"`          // its Conn.ID
}

// chunkBytes bounds the entries of one clients message, well under
// PostgreSQL's 8000 bytes with the envelope.
const chunkBytes = 4000
