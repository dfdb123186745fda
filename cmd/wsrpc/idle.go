package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/wsrpc/wsrpc"
)

const idleHelp = `Usage: wsrpc idle [flags] URL

Open -n idle clients to the server at URL, print "connected N" on stdout
when all are up, and hold them, pinging every --keepalive, until SIGINT or
SIGTERM; then close them all and exit. It measures what idle connections
cost a server: run it, then read the server's memory.

Only loopback addresses are allowed, for URL and --from (127.0.0.0/8 and
::1). One source address has about 28,000 ephemeral ports; for more
connections run several processes with distinct --from addresses (Linux
routes all of 127.0.0.0/8 to the loopback interface). Each client holds a
file descriptor: raise "ulimit -n" to suit.

Flags:
  -n N             clients to open (default 5000)
  --from IP        local address to connect from (default: the system's
                   choice)
  --keepalive D    keep-alive interval of each client (default 5s; 0 or
                   negative: no pings)
  --subscribe T    once connected, each client subscribes to the pub/sub
                   topic T (calls subscribe, as FWP's PubSubClient does)
                   and stays idle: what an idle subscriber costs

Exit status: 0 after a clean close on SIGINT or SIGTERM; 2 for bad usage,
a non-loopback address, or a client that could not connect.

Examples:
  wsrpc idle ws://127.0.0.1:9000/ws -n 5000 --from 127.0.0.2
  wsrpc idle ws://127.0.0.1:9000/ws -n 100 --keepalive 1s
`

const (
	idleMax         = 30000            // clients of one process
	idleDialers     = 32               // clients connecting at once
	idleDialTimeout = 10 * time.Second // bounds each client's connect
)

// idleFlags are the flags of wsrpc idle.
type idleFlags struct {
	n         int
	from      string
	keepAlive time.Duration
	subscribe string
}

func (f *idleFlags) flagSet() *flag.FlagSet {
	fs := newFlagSet("idle")
	fs.IntVar(&f.n, "n", 5000, "")
	fs.StringVar(&f.from, "from", "", "")
	durationVar(fs, &f.keepAlive, "keepalive", 5*time.Second)
	fs.StringVar(&f.subscribe, "subscribe", "", "")
	return fs
}

func runIdle(ctx context.Context, args []string, std stdio) int {
	var f idleFlags
	pos, code, ok := parseArgs(f.flagSet(), args, idleHelp, std)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return usageError(std, "idle", "want one URL")
	}
	if f.n < 1 || f.n > idleMax {
		return usageError(std, "idle", fmt.Sprintf("-n must be between 1 and %d", idleMax))
	}
	rawURL := pos[0]
	if !strings.Contains(rawURL, "://") {
		rawURL = "ws://" + rawURL
	}
	dial, err := loopbackDialer(rawURL, f.from)
	if err != nil {
		return usageError(std, "idle", err.Error())
	}
	ka := f.keepAlive
	if ka <= 0 {
		ka = -1
	}
	var lost atomic.Int64 // connections that ended before we closed them
	var closing atomic.Bool
	opts := &wsrpc.DialOptions{
		NetDialContext:   dial,
		Retry:            wsrpc.RetryOptions{MaxTries: dialTries},
		DisableReconnect: true,
		ConnOptions: wsrpc.ConnOptions{
			KeepAlive: wsrpc.KeepAlive{Interval: ka},
			Logger:    slog.New(slog.DiscardHandler),
			OnDisconnect: func(_ *wsrpc.Conn, err error) {
				if !closing.Load() {
					lost.Add(1)
				}
			},
		},
	}

	clients, err := dialIdle(ctx, rawURL, f.n, f.subscribe, opts, std)
	if err != nil {
		closing.Store(true)
		closeAll(clients)
		if ctx.Err() != nil {
			return failure(std, errors.New("idle: interrupted"))
		}
		return callFailure(ctx, std, idleDialTimeout, err)
	}
	fmt.Fprintf(std.out, "connected %d\n", len(clients))

	<-ctx.Done()
	closing.Store(true)
	closeAll(clients)
	msg := fmt.Sprintf("wsrpc: idle: closed %d clients", len(clients))
	if n := lost.Load(); n > 0 {
		msg += fmt.Sprintf("; %d had lost their connection before", n)
	}
	fmt.Fprintln(std.err, msg)
	return exitOK
}

// loopbackDialer checks that rawURL names a loopback IP address and from,
// if not empty, is a loopback IP address of the same family, and returns
// the function that dials from it.
func loopbackDialer(rawURL, from string) (func(ctx context.Context, network, addr string) (net.Conn, error), error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	host, err := netip.ParseAddr(u.Hostname())
	if err != nil || !host.Unmap().IsLoopback() {
		return nil, fmt.Errorf("URL host %q: want a loopback IP address (127.0.0.0/8 or ::1)", u.Hostname())
	}
	d := &net.Dialer{}
	if from != "" {
		src, err := netip.ParseAddr(from)
		if err != nil || !src.Unmap().IsLoopback() {
			return nil, fmt.Errorf("--from %q: want a loopback IP address (127.0.0.0/8 or ::1)", from)
		}
		if src.Unmap().Is4() != host.Unmap().Is4() {
			return nil, fmt.Errorf("--from %s and the URL's host %s are of different address families", src, host)
		}
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src.Unmap(), 0))
	}
	return d.DialContext, nil
}

// dialIdle connects n clients, a few at a time, reporting progress on
// stderr. On failure it returns the clients it opened with the first error.
func dialIdle(ctx context.Context, rawURL string, n int, topic string, opts *wsrpc.DialOptions, std stdio) ([]*wsrpc.Client, error) {
	return dialMany(ctx, n, idleDialers, func(ctx context.Context) (*wsrpc.Client, error) {
		ctx, cancel := context.WithTimeout(ctx, idleDialTimeout)
		defer cancel()
		cl, err := wsrpc.Dial(ctx, rawURL, opts)
		if err != nil || topic == "" {
			return cl, err
		}
		var ok bool
		if err := cl.Call(ctx, "subscribe", map[string]any{"topics": []string{topic}}, &ok); err != nil {
			cl.Close()
			return nil, fmt.Errorf("subscribe %q: %w", topic, err)
		}
		return cl, nil
	}, func(done int) {
		fmt.Fprintf(std.err, "wsrpc: idle: %d of %d connected\n", done, n)
	})
}
