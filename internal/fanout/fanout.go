// Package fanout is how package pubsub sends its notifies through a path
// of the core's that the public API does not offer: the arguments are
// spliced into the request frame as pubsub built them (no check that they
// are a JSON object), the Server's context is watched once per connection
// rather than once per call, and a notify may be queued only if the
// connection's send queue has room now, so that a publish can send it
// without a goroutine of its own. Package wsrpc sets Notify when it is
// initialized.
package fanout

import "context"

// Notify calls method on the peer of conn (a *wsrpc.Conn), as
// (*wsrpc.Conn).Go does, with the keyword arguments head followed by tail:
// together a JSON object, which is not checked. life bounds the call as
// Go's ctx does; it is expected to outlive many calls on conn, and is
// watched once per connection. With wait false, the request is queued
// only if the send queue has room now: otherwise Notify reports sent
// false, and nothing was done (done is not called). If err is not nil,
// the call was not made and done is not called; if sent is true, done is
// called once with the outcome: nil, or an error as Go's Reply.Err
// returns it.
var Notify func(conn any, life context.Context, method string, head, tail []byte, wait bool, done func(error)) (sent bool, err error)
