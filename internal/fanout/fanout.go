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
// (*wsrpc.Conn).Go does with ctx, with the keyword arguments head followed
// by tail: together a JSON object, which is not checked. life is a context
// expected to outlive many calls on conn, watched once per connection;
// ctx is life itself or made from it with values only (an event's trace
// context), so that it ends when life does: then the call is watched
// through life, at no cost of its own. (A ctx that may end sooner, as one
// a connection's Observer returns might, is watched on its own.) With wait
// false, the request is queued
// only if the send queue has room now: otherwise Notify reports sent
// false, and nothing was done (done is not called). If err is not nil,
// the call was not made and done is not called; if sent is true,
// done.NotifyDone is called once with token and the outcome: nil, or an
// error as Go's Reply.Err returns it. (An interface and a token rather
// than a func: no closure to allocate per notify.)
var Notify func(conn any, life, ctx context.Context, method string, head, tail []byte, wait bool, done Done, token any) (sent bool, err error)

// Done is told the outcome of the notifies sent with it.
type Done interface {
	NotifyDone(token any, err error)
}
