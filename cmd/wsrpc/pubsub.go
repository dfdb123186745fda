package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/pubsub"
)

const subHelp = `Usage: wsrpc sub [flags] URL TOPIC...

Subscribe to each TOPIC on the pub/sub server at URL (wsrpc serve's
/pubsub, or a fastapi_websocket_pubsub PubSubEndpoint; no scheme means
ws://) and print each event on stdout as one line of JSON,
{"topic": TOPIC, "data": DATA}, until SIGINT or SIGTERM, or --count events.
The topic __EventNotifier_ALL_TOPICS__ subscribes to every topic. When the
connection drops, sub reconnects and subscribes again; events published
meanwhile are not delivered.

Flags:
  --count N       exit after N events (default 0: until interrupted)
  --header K:V    add the header K to the upgrade request (repeatable)
  --timeout D     bound the first connect and subscribe (default 10s; 0:
                  none); D has a unit: 500ms, 5s, 1m
  -v              log the connection to stderr

Exit status: 0 after --count events, or SIGINT or SIGTERM; 1 when the
server refused a subscription (its code and message go to stderr); 2 for
any other failure: bad usage, no server, connection refused (401, 403), a
reconnect that failed for good.

Examples:
  wsrpc sub ws://127.0.0.1:9000/pubsub time
  wsrpc sub --count 1 127.0.0.1:9000/pubsub orders users
`

const pubHelp = `Usage: wsrpc pub [flags] URL TOPIC [DATA]

Publish DATA on TOPIC through the pub/sub server at URL (no scheme means
ws://), and exit once the server answered. DATA is JSON if it is valid
JSON, else a string: 1 is the number 1, '{"id": 7}' an object, hello the
string "hello"; without DATA the event's data is null. The server answers
once its subscribers took the event (at most its sync timeout), or at
once with --no-sync.

Flags:
  --no-sync       have the server answer without waiting for its subscribers
  --header K:V    add the header K to the upgrade request (repeatable)
  --timeout D     bound the whole command (default 10s; 0: none); D has a
                  unit: 500ms, 5s, 1m
  -v              log the connection to stderr

Exit status: 0 once the server answered; 1 when it answered with an error
(refused: its code and message go to stderr); 2 for any other failure: bad
usage, no server, connection refused (401, 403), timeout, interruption.

Examples:
  wsrpc pub ws://127.0.0.1:9000/pubsub orders '{"id": 7}'
  wsrpc pub 127.0.0.1:9000/pubsub news hello
`

// pubsubFlags are the flags sub and pub share.
type pubsubFlags struct {
	header  http.Header
	timeout time.Duration
	verbose bool
	count   int  // sub
	noSync  bool // pub
}

func (f *pubsubFlags) flagSet(name string) *flag.FlagSet {
	fs := newFlagSet(name)
	f.header = make(http.Header)
	fs.Var(headerFlag(f.header), "header", "")
	durationVar(fs, &f.timeout, "timeout", 10*time.Second)
	fs.BoolVar(&f.verbose, "v", false, "")
	switch name {
	case "sub":
		fs.IntVar(&f.count, "count", 0, "")
	case "pub":
		fs.BoolVar(&f.noSync, "no-sync", false, "")
	}
	return fs
}

// dialOptions are the options of sub's and pub's client.
func (f *pubsubFlags) dialOptions(std stdio, socks *sockets, reconnect bool) *pubsub.ClientOptions {
	logger := slog.New(slog.DiscardHandler)
	if f.verbose {
		logger = slog.New(slog.NewTextHandler(std.err, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	o := &pubsub.ClientOptions{DialOptions: wsrpc.DialOptions{
		Header:         f.header,
		NetDialContext: socks.dial,
		ConnOptions:    wsrpc.ConnOptions{Logger: logger},
	}}
	if reconnect {
		// Dial is bounded by --timeout; reconnects go on, every 5 s at
		// most, until a final answer.
		o.Retry = wsrpc.RetryOptions{MaxInterval: 5 * time.Second}
	} else {
		o.Retry = wsrpc.RetryOptions{MaxTries: dialTries}
		o.DisableReconnect = true
	}
	return o
}

func wsURL(url string) string {
	if !strings.Contains(url, "://") {
		return "ws://" + url
	}
	return url
}

func runSub(ctx context.Context, args []string, std stdio) int {
	var f pubsubFlags
	pos, code, ok := parseArgs(f.flagSet("sub"), args, subHelp, std)
	if !ok {
		return code
	}
	if len(pos) < 2 {
		return usageError(std, "sub", "want URL and at least one TOPIC")
	}
	if f.count < 0 {
		return usageError(std, "sub", "--count must not be negative")
	}
	url, topics := wsURL(pos[0]), pos[1:]

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	setup := ctx
	if f.timeout > 0 {
		var cancel context.CancelFunc
		setup, cancel = context.WithTimeout(ctx, f.timeout)
		defer cancel()
	}
	var socks sockets
	cl, err := pubsub.Dial(setup, url, f.dialOptions(std, &socks, true))
	if err != nil {
		return callFailure(setup, std, f.timeout, err)
	}
	defer cl.Close()

	var mu sync.Mutex // one line at a time, and the count
	printed := 0
	var line bytes.Buffer
	print := func(_ context.Context, ev pubsub.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if f.count > 0 && printed >= f.count {
			return nil
		}
		line.Reset()
		line.WriteString(`{"topic":`)
		b, _ := json.Marshal(ev.Topic)
		line.Write(b)
		line.WriteString(`,"data":`)
		if err := json.Compact(&line, ev.Data); err != nil {
			line.WriteString("null")
		}
		line.WriteString("}\n")
		std.out.Write(line.Bytes())
		printed++
		if f.count > 0 && printed == f.count {
			stop()
		}
		return nil
	}
	for _, t := range topics {
		if err := cl.Subscribe(setup, t, print); err != nil {
			if ctx.Err() != nil {
				return exitOK // interrupted, or --count events, while subscribing
			}
			if errors.Is(err, pubsub.ErrForbidden) {
				fmt.Fprintf(std.err, "wsrpc: subscribe %q: refused\n", t)
			}
			return callFailure(setup, std, f.timeout, err)
		}
	}
	select {
	case <-ctx.Done(): // --count events, or interrupted
		return exitOK
	case <-cl.RPC().Done(): // gave up reconnecting
		return failure(std, fmt.Errorf("connection lost for good: %w", cl.RPC().Err()))
	}
}

func runPub(ctx context.Context, args []string, std stdio) int {
	var f pubsubFlags
	pos, code, ok := parseArgs(f.flagSet("pub"), args, pubHelp, std)
	if !ok {
		return code
	}
	if len(pos) < 2 || len(pos) > 3 {
		return usageError(std, "pub", "want URL, TOPIC and at most one DATA")
	}
	url, topic := wsURL(pos[0]), pos[1]
	data := json.RawMessage("null")
	if len(pos) == 3 {
		data = argValue(pos[2])
	}
	if f.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.timeout)
		defer cancel()
	}
	var socks sockets
	cl, err := pubsub.Dial(ctx, url, f.dialOptions(std, &socks, false))
	if err != nil {
		return callFailure(ctx, std, f.timeout, err)
	}
	defer closeWithin(ctx, func() { cl.Close() }, &socks)
	if err := cl.PublishWith(ctx, []string{topic}, data, pubsub.PublishOptions{NoSync: f.noSync}); err != nil {
		return callFailure(ctx, std, f.timeout, err)
	}
	return exitOK
}

// closeWithin runs closeFn (a client's Close) within ctx's time: Close
// sends a close frame and waits for the server's (up to
// wsrpc.DefaultCloseTimeout), and a server that stopped reading never
// sends one. When ctx ends first (--timeout, or an interrupt), the sockets
// close under the client, so that --timeout bounds the whole command.
func closeWithin(ctx context.Context, closeFn func(), socks *sockets) {
	cut := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(cut)
		socks.closeAll()
	})
	closeFn()
	if !stop() {
		<-cut
	}
}
