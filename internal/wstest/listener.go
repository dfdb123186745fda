package wstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
)

// Host is the host name of every [Listener]: dial "pipe:80" (ws://pipe/…)
// or "pipe:443"; the port is ignored.
const Host = "pipe"

// ErrRefused is the error of a dial to a closed [Listener], or to a host
// other than [Host] (say, a proxy from the environment), as a refused TCP
// connection would be.
var ErrRefused = errors.New("wstest: connection refused")

// Listener is an in-memory net.Listener: each [Listener.DialContext] makes
// a [Pipe], hands one end to Accept and returns the other. The accepted
// end's RemoteAddr is "client:N" for the Nth dial, so that servers see
// every client from the same host, as with loopback sockets, and its
// LocalAddr is the address dialed.
type Listener struct {
	conns chan *Conn
	once  sync.Once
	done  chan struct{} // closed by Close

	mu    sync.Mutex
	dials int
}

// NewListener returns a Listener, which accepts until it is closed.
func NewListener() *Listener {
	return &Listener{conns: make(chan *Conn), done: make(chan struct{})}
}

// Accept waits for the next dial and returns the server's end of its
// pipe, a *[Conn]. Once the Listener is closed it fails with an error
// that wraps net.ErrClosed.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: "pipe", Addr: l.Addr(), Err: net.ErrClosed}
	}
}

// Close stops accepting: Accept and new dials fail. Connections already
// made stay open. Close is idempotent.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr returns the listener's address, "pipe:80".
func (l *Listener) Addr() net.Addr { return addr(Host + ":80") }

// DialContext connects to the listener and returns the client's end of the
// pipe, a *[Conn]: use it as a dialer's NetDialContext
// (wsrpc.DialOptions.NetDialContext, websocket.Dialer.NetDialContext). It
// waits until Accept takes the connection, or ctx ends, like a TCP
// connect to a full backlog. It fails with [ErrRefused] once the listener
// is closed, and for an address whose host is not [Host].
func (l *Listener) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: network, Addr: addr(address), Err: err}
	}
	if host, _, err := net.SplitHostPort(address); err != nil || host != Host {
		return nil, opErr(fmt.Errorf("%w: no listener at %s (only %s)", ErrRefused, address, Host))
	}
	select {
	case <-l.done:
		return nil, opErr(ErrRefused)
	default:
	}
	l.mu.Lock()
	l.dials++
	n := l.dials
	l.mu.Unlock()
	client, server := pipe(addr("client:"+strconv.Itoa(n)), addr(address))
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, opErr(ErrRefused)
	case <-ctx.Done():
		return nil, opErr(ctx.Err())
	}
}
