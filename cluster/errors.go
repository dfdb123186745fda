package cluster

import "errors"

// Errors of routed calls. Test for them with [errors.Is]; a call's error
// also wraps, as a local call's does, the remote *[wsrpc.Error],
// [wsrpc.ErrConnectionLost], [wsrpc.ErrClosed],
// [wsrpc.ErrBrokerUnavailable], [wsrpc.ErrBrokerMessageTooLarge] or the
// context's error.
var (
	// ErrNoSuchClient: no live node has a client with that id. The call
	// was not sent.
	ErrNoSuchClient = errors.New("cluster: no node has the client")
	// ErrBadID: an [Options].ID with characters other than ASCII letters,
	// digits, '-' and '_', or longer than 64 bytes.
	ErrBadID = errors.New("cluster: bad node id")
)

// errNotHere is the owner's answer "I no longer have that client": the
// call did not run, and the caller looks again.
var errNotHere = errors.New("cluster: client not on that node")
