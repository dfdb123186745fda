package wsrpc

import (
	"context"
	"sync"
	"sync/atomic"
)

// hooks are the connect and disconnect hooks registered on a Server or a
// Client besides those of its options, so that several layers (pub/sub,
// routed calls, the application) can each have their own. They are kept
// as copy-on-write lists: a connection reads them without a lock.
type hooks struct {
	mu         sync.Mutex // serializes registrations
	connect    atomic.Pointer[[]func(context.Context, *Conn) error]
	disconnect atomic.Pointer[[]func(*Conn, error)]
}

func (h *hooks) addConnect(f func(context.Context, *Conn) error) {
	addHook(&h.mu, &h.connect, f)
}

func (h *hooks) addDisconnect(f func(*Conn, error)) {
	addHook(&h.mu, &h.disconnect, f)
}

// addHook stores a copy of the list in p with f appended; mu serializes
// the writers.
func addHook[F any](mu *sync.Mutex, p *atomic.Pointer[[]F], f F) {
	mu.Lock()
	defer mu.Unlock()
	var list []F
	if old := p.Load(); old != nil {
		list = append(list, *old...)
	}
	list = append(list, f)
	p.Store(&list)
}

// onConnect returns the registered connect hooks, or nil.
func (h *hooks) onConnect() []func(context.Context, *Conn) error {
	if h == nil {
		return nil
	}
	if p := h.connect.Load(); p != nil {
		return *p
	}
	return nil
}

// onDisconnect returns the registered disconnect hooks, or nil.
func (h *hooks) onDisconnect() []func(*Conn, error) {
	if h == nil {
		return nil
	}
	if p := h.disconnect.Load(); p != nil {
		return *p
	}
	return nil
}

// RegisterOnConnect adds f to the hooks that run when a connection opens,
// after ServerOptions.OnConnect, in the order they were registered, in the
// same goroutine: the first error closes the connection (status 1011) and
// skips the hooks after it. Hooks registered while connections are open
// run from the next connection on. Layers built on the Server (pub/sub,
// routed calls) use it, as net/http's RegisterOnShutdown.
func (s *Server) RegisterOnConnect(f func(ctx context.Context, c *Conn) error) {
	s.cfg.hooks.addConnect(f)
}

// RegisterOnDisconnect adds f to the hooks that run once per connection
// after it ended, after ServerOptions.OnDisconnect, in the order they were
// registered.
func (s *Server) RegisterOnDisconnect(f func(c *Conn, err error)) {
	s.cfg.hooks.addDisconnect(f)
}

// RegisterOnConnect adds f to the hooks that run on each new connection of
// the client, after DialOptions.OnConnect, in the order they were
// registered; see [Server.RegisterOnConnect]. A hook registered after Dial
// returned runs from the next connection (the next reconnect) on: a layer
// that needs the current connection too uses [Client.Conn].
func (cl *Client) RegisterOnConnect(f func(ctx context.Context, c *Conn) error) {
	cl.cfg.hooks.addConnect(f)
}

// RegisterOnDisconnect adds f to the hooks that run once per connection of
// the client after it ended, after DialOptions.OnDisconnect.
func (cl *Client) RegisterOnDisconnect(f func(c *Conn, err error)) {
	cl.cfg.hooks.addDisconnect(f)
}
