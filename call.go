package wsrpc

import "context"

// Caller is implemented by [*Conn] and [*Client]: something whose peer's
// methods can be called.
type Caller interface {
	Call(ctx context.Context, method string, args, result any) error
}

// Call calls method on c's peer with keyword arguments args (a struct, a
// map, a json.RawMessage object, or nil) and returns the result decoded as
// R. Errors are as for [Conn.Call].
func Call[R any](ctx context.Context, c Caller, method string, args any) (R, error) {
	var r R
	err := c.Call(ctx, method, args, &r)
	return r, err
}
