package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/cluster"
	"github.com/wsrpc/wsrpc/otelwsrpc"
	"github.com/wsrpc/wsrpc/pubsub"
)

const serveHelp = `Usage: wsrpc serve [flags]

Run the demo server until SIGINT or SIGTERM. It serves RPC over WebSockets
on /ws, /ws/{client_id}, /pubsub and /pubsub/{client_id} (the same methods
on each), a demo page for browsers at / (with the browser client at
/wsrpc.js and its types at /wsrpc.d.ts), logs each connection and
disconnection to stderr, and exposes:

  add(a, b), multiply(a, b)   numbers; the result is a float
  concat(a, b)                strings
  echo_string(text)           echo, with the text copied into a Go string
                              (echo itself borrows it: wsrpc.RawText)
  register_wake_up_call(time_delta, name)
                              returns true at once, then time_delta seconds
                              later (at most 3600) calls
                              wake_up(message="Good morning!", name=name)
                              on the caller. name is at most 1024 bytes.
                              At most 100 wake-up calls may be pending per
                              connection, and 10,000 in all; more are
                              refused with error -32000
  greet()                     calls whoami() on the caller, during the
                              call, and returns "hello, " + its answer
                              (the demo page's nested call)
  echo, get_process_details, call_me_back, get_response
                              the utility methods of fastapi_websocket_rpc
  call_client(client_id, method, arguments)
                              calls method (keyword arguments: an object)
                              on the client connected as /ws/{client_id}
                              (or whose channel id is client_id), on this
                              node or, with --broker, on any node of the
                              cluster, and returns its result or error
  clients()                   the cluster's clients: [{node, client_id,
                              conn_id}]
  node()                      this node's id
  _ping_, _get_channel_id_    the built-ins
  subscribe, unsubscribe, publish, ping
                              pub/sub, as fastapi_websocket_pubsub's
                              PubSubEndpoint serves it (see wsrpc sub and
                              wsrpc pub); the server publishes the time
                              (RFC 3339, UTC) every second on topic "time"

On SIGINT or SIGTERM it stops accepting connections and gives the calls in
flight 5s to finish; then it closes the connections that still have calls
running, logs how many at WARN, and exits with status 0 all the same.

Flags:
  --addr HOST:PORT   address to listen on (default 127.0.0.1:9000);
                     port 0 picks a free port, printed on startup
  --token T          accept only connections whose upgrade request has the
                     header "X-Token: T", or carries T as a browser sends
                     it (wsrpc.RequestToken: subprotocol wsrpc.token.*,
                     query parameter access_token); refuse others with 403.
                     The demo page takes it as http://HOST/#token=T
  --broker URL       join the cluster of the nodes sharing this broker,
                     for pub/sub across nodes and call_client:
                     redis://HOST:PORT[/DB] (the Python broadcaster's
                     channel and format, so FWP nodes share it),
                     nats://HOST:PORT, postgres://USER@HOST:PORT/DB
                     (LISTEN/NOTIFY); off unless set: the node is alone
  --node-id ID       this node's id in the cluster (letters, digits, '-',
                     '_'; default: random)
  --metrics HOST:PORT
                     serve Prometheus metrics at http://HOST:PORT/metrics
                     (promwsrpc's wsrpc_* series, and Go's and the
                     process's); off unless set
  --otlp URL         trace every call (OpenTelemetry, otelwsrpc), with each
                     pub/sub notify linked to its publish, across nodes
                     too, and export the spans over OTLP/HTTP to URL, a
                     collector's http://HOST:4318 (path /v1/traces unless
                     given); off unless set

Exit status: 0 after SIGINT or SIGTERM, drained or not; 2 for bad usage or
a server that cannot listen or fails.

Examples:
  wsrpc serve
  wsrpc serve --addr 127.0.0.1:0 --token secret
  wsrpc serve --metrics 127.0.0.1:9100
  wsrpc serve --broker redis://127.0.0.1:6379 --node-id node1
  wsrpc call ws://127.0.0.1:9000/ws multiply a=6 b=7
  wsrpc sub ws://127.0.0.1:9000/pubsub time
`

const (
	// shutdownTimeout bounds the graceful part of a shutdown: calls in
	// flight get this long to finish before their connections are closed.
	shutdownTimeout = 5 * time.Second
	// cutGrace is how long the handlers of the calls a shutdown cut short
	// get to return, once their contexts are canceled.
	cutGrace = 2 * time.Second
	// joinTimeout bounds joining the cluster: subscribing to the broker.
	joinTimeout = 10 * time.Second
)

const (
	// maxWakeUpDelay caps register_wake_up_call's time_delta.
	maxWakeUpDelay = time.Hour
	// maxWakeUpsPerConn caps the wake-up calls pending on one connection:
	// registered, and not yet made or still waiting for the answer.
	maxWakeUpsPerConn = 100
	// maxWakeUps caps the wake-up calls pending on the whole server.
	maxWakeUps = 10000
	// maxWakeUpName caps the bytes of register_wake_up_call's name, which
	// a pending wake-up call keeps.
	maxWakeUpName = 1024
	// timeTopic is the topic the demo publishes the time on, every
	// timeInterval.
	timeTopic    = "time"
	timeInterval = time.Second
)

// serveFlags are the flags of wsrpc serve.
type serveFlags struct {
	addr    string
	token   string
	metrics string
	otlp    string
	broker  string
	nodeID  string
}

func (f *serveFlags) flagSet() *flag.FlagSet {
	fs := newFlagSet("serve")
	fs.StringVar(&f.addr, "addr", "127.0.0.1:9000", "")
	fs.StringVar(&f.token, "token", "", "")
	fs.StringVar(&f.metrics, "metrics", "", "")
	fs.StringVar(&f.otlp, "otlp", "", "")
	fs.StringVar(&f.broker, "broker", "", "")
	fs.StringVar(&f.nodeID, "node-id", "", "")
	return fs
}

func runServe(ctx context.Context, args []string, std stdio) int {
	return serveCommand(ctx, args, std, nil)
}

// serveCommand is runServe; setup, if not nil, adjusts the demo server
// before it serves (tests add methods and shorten the drain).
func serveCommand(ctx context.Context, args []string, std stdio, setup func(*demo)) int {
	var f serveFlags
	pos, code, ok := parseArgs(f.flagSet(), args, serveHelp, std)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(std, "serve", fmt.Sprintf("unexpected argument %q", pos[0]))
	}
	// At INFO: the demo's hooks log connections themselves, and the
	// library's Debug lines would repeat them.
	logger := slog.New(slog.NewTextHandler(std.err, nil))
	cfg := demoConfig{token: f.token, logger: logger}
	var observers []wsrpc.Observer
	var m *metrics
	if f.metrics != "" {
		var err error
		if m, err = listenMetrics(f.metrics); err != nil {
			return failure(std, err)
		}
		defer m.ln.Close()
		observers = append(observers, m.observer)
		cfg.psObserver = m.observer
	}
	if f.otlp != "" {
		obs, stop, err := startOTLP(f.otlp)
		if err != nil {
			return failure(std, err)
		}
		defer func() {
			if err := stop(); err != nil {
				logger.Warn("exporting the last spans", "err", err)
			}
		}()
		observers = append(observers, obs)
		// One trace across the nodes of a routed call, and notify spans
		// linked to their publish's, on every node.
		cfg.trace = otelwsrpc.Propagator{}
	}
	if len(observers) > 0 {
		cfg.observer = wsrpc.JoinObservers(observers...)
	}
	if f.broker != "" {
		b, closeBroker, err := openBroker(ctx, f.broker, logger)
		if err != nil {
			return failure(std, err)
		}
		defer closeBroker()
		cfg.broker = b
	}
	cfg.nodeID = f.nodeID
	d, err := newDemo(cfg)
	if err != nil {
		return failure(std, err)
	}
	if m != nil {
		d.metricsLn, d.metricsHandler = m.ln, m.handler
	}
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		d.stop()
		return failure(std, err)
	}
	if setup != nil {
		setup(d)
	}
	if err := d.serve(ctx, ln, std.out); err != nil {
		return failure(std, err)
	}
	return exitOK
}

// demo is the demo server: its methods, its WebSocket server, and the
// wake-up calls it owes its clients.
type demo struct {
	mux  *wsrpc.Mux
	srv  *wsrpc.Server
	ps   *pubsub.Server
	node *cluster.Node
	log  *slog.Logger

	// metricsLn, if not nil, is where serve serves metricsHandler.
	metricsLn      net.Listener
	metricsHandler http.Handler

	// Set before serve; newDemo sets the defaults.
	drain         time.Duration // shutdownTimeout
	tick          time.Duration // timeInterval
	maxPerConn    int           // maxWakeUpsPerConn
	maxAllWakeUps int           // maxWakeUps

	mu       sync.Mutex
	stopped  bool                        // no new wake-up calls
	pending  map[*wsrpc.Conn]connWakeUps // pending wake-up calls, by connection
	nPending int                         // all of them
	wakeUps  sync.WaitGroup              // one per pending wake-up call
}

// connWakeUps is the wake-up calls pending on one connection.
type connWakeUps map[*wakeUpCall]struct{}

// wakeUpCall is one pending wake-up call. It holds a timer, not a
// goroutine, until it is due.
type wakeUpCall struct {
	conn  *wsrpc.Conn
	name  string
	timer *time.Timer
}

// demoConfig is what the flags of wsrpc serve set in the demo server.
type demoConfig struct {
	// token, if not empty, is required in the X-Token header of every
	// upgrade request.
	token  string
	logger *slog.Logger
	// observer, if not nil, watches the server's connections, and
	// psObserver its pub/sub deliveries.
	observer   wsrpc.Observer
	psObserver pubsub.Observer
	// broker, if not nil, links the node to the others of its cluster,
	// for pub/sub and routed calls; nodeID names it there (empty: a
	// random id).
	broker wsrpc.Broker
	nodeID string
	// trace, if not nil, carries trace context with routed calls and with
	// pub/sub events.
	trace wsrpc.TracePropagator
}

// newDemo returns the demo server, or the error of invalid server options.
func newDemo(cfg demoConfig) (*demo, error) {
	token, logger := cfg.token, cfg.logger
	d := &demo{
		mux:           wsrpc.NewMux(),
		log:           logger,
		drain:         shutdownTimeout,
		tick:          timeInterval,
		maxPerConn:    maxWakeUpsPerConn,
		maxAllWakeUps: maxWakeUps,
		pending:       make(map[*wsrpc.Conn]connWakeUps),
	}
	wsrpc.RegisterUtilities(d.mux)
	wsrpc.Register(d.mux, "add", func(_ context.Context, p pair[float64]) (float64, error) {
		return p.A + p.B, nil
	})
	wsrpc.Register(d.mux, "multiply", func(_ context.Context, p pair[float64]) (float64, error) {
		return p.A * p.B, nil
	})
	wsrpc.Register(d.mux, "concat", func(_ context.Context, p pair[string]) (string, error) {
		return p.A + p.B, nil
	})
	// echo as most handlers take their arguments: a string of its own.
	wsrpc.Register(d.mux, "echo_string", func(_ context.Context, a struct {
		Text string `json:"text"`
	}) (string, error) {
		return a.Text, nil
	})
	wsrpc.Register(d.mux, "register_wake_up_call", d.registerWakeUpCall)
	registerGreet(d.mux)

	opts := &wsrpc.ServerOptions{
		ConnOptions: wsrpc.ConnOptions{
			Logger:   logger,
			Observer: cfg.observer,
			// Connections are logged here, at INFO, whatever level the
			// library logs them at.
			OnConnect: func(_ context.Context, c *wsrpc.Conn) error {
				d.log.Info("connected", "conn", c.ID(), "remote", c.RemoteAddr().String(), "path", c.Request().URL.Path)
				return nil
			},
			OnDisconnect: func(c *wsrpc.Conn, err error) {
				d.dropWakeUps(c)
				d.log.Info("disconnected", "conn", c.ID(), "cause", err)
			},
		},
	}
	if token != "" {
		opts.Authenticate = func(r *http.Request) (any, error) {
			if !tokenOK(r, token) {
				return nil, &wsrpc.HTTPError{StatusCode: http.StatusForbidden}
			}
			return nil, nil
		}
	}
	srv, err := wsrpc.NewServer(d.mux, opts)
	if err != nil {
		return nil, err
	}
	d.srv = srv
	psOpts := &pubsub.Options{Logger: logger, Broker: cfg.broker, NodeID: cfg.nodeID, Trace: cfg.trace}
	if cfg.psObserver != nil {
		psOpts.Observer = cfg.psObserver
	}
	d.ps = pubsub.NewServer(psOpts)
	d.ps.Register(d.srv, d.mux)
	// Routed calls: over the cluster's broker, or alone over one of the
	// node's own.
	b := cfg.broker
	if b == nil {
		b = pubsub.NewMemoryBroker()
	}
	jctx, cancel := context.WithTimeout(context.Background(), joinTimeout)
	defer cancel()
	if d.node, err = cluster.Join(jctx, d.srv, b, &cluster.Options{ID: cfg.nodeID, Logger: logger, Trace: cfg.trace}); err != nil {
		d.ps.Close()
		return nil, err
	}
	d.registerCluster()
	return d, nil
}

// pair is the arguments of the two-operand methods.
type pair[T any] struct {
	A T `json:"a"`
	B T `json:"b"`
}

type wakeUpArgs struct {
	TimeDelta float64 `json:"time_delta"` // seconds
	Name      string  `json:"name"`
}

// registerWakeUpCall is the method register_wake_up_call: it returns at
// once and calls wake_up on the caller time_delta seconds later, unless the
// connection or the server ends first. It refuses a call over the limits
// of pending wake-ups with a CodeServerError error, and one while the
// server stops with wsrpc.ErrShuttingDown.
func (d *demo) registerWakeUpCall(ctx context.Context, a wakeUpArgs) (bool, error) {
	if !(a.TimeDelta >= 0 && a.TimeDelta <= maxWakeUpDelay.Seconds()) {
		return false, wsrpc.Errorf(wsrpc.CodeInvalidParams, "time_delta must be between 0 and %v seconds", maxWakeUpDelay.Seconds())
	}
	if len(a.Name) > maxWakeUpName {
		return false, wsrpc.Errorf(wsrpc.CodeInvalidParams, "name must be at most %d bytes", maxWakeUpName)
	}
	delay := time.Duration(a.TimeDelta * float64(time.Second))
	// The handler's ctx may end when the handler returns, so the call is
	// tied to the connection (and to the server) instead: OnDisconnect
	// drops the connection's wake-ups, after its handlers have returned.
	caller := wsrpc.ConnFromContext(ctx)
	d.mu.Lock()
	defer d.mu.Unlock()
	cw := d.pending[caller]
	switch {
	case d.stopped:
		return false, wsrpc.ErrShuttingDown
	case len(cw) >= d.maxPerConn:
		return false, wsrpc.Errorf(wsrpc.CodeServerError,
			"too many pending wake-up calls on this connection (at most %d)", d.maxPerConn)
	case d.nPending >= d.maxAllWakeUps:
		return false, wsrpc.Errorf(wsrpc.CodeServerError,
			"too many pending wake-up calls on this server (at most %d); try again later", d.maxAllWakeUps)
	}
	if cw == nil {
		cw = make(connWakeUps)
		d.pending[caller] = cw
	}
	w := &wakeUpCall{conn: caller, name: a.Name}
	cw[w] = struct{}{}
	d.nPending++
	d.wakeUps.Add(1)
	// The timer's function runs once, or never if stopped: whichever of
	// wake and a successful Stop comes first calls wakeUps.Done.
	w.timer = time.AfterFunc(delay, func() { d.wake(w) })
	return true, nil
}

// wake makes the wake-up call w, which is due.
func (d *demo) wake(w *wakeUpCall) {
	defer d.wakeUps.Done()
	d.mu.Lock()
	stopped := d.stopped
	d.mu.Unlock()
	if !stopped {
		args := map[string]string{"message": "Good morning!", "name": w.name}
		// Bounded by the server's call timeout, and by the connection.
		if err := w.conn.Call(w.conn.Context(), "wake_up", args, nil); err != nil {
			d.log.Warn("wake_up failed", "conn", w.conn.ID(), "err", err)
		}
	}
	d.mu.Lock()
	d.forget(w)
	d.mu.Unlock()
}

// forget removes w from the pending wake-up calls; d.mu is held.
func (d *demo) forget(w *wakeUpCall) {
	cw := d.pending[w.conn]
	if _, ok := cw[w]; !ok {
		return
	}
	delete(cw, w)
	d.nPending--
	if len(cw) == 0 {
		delete(d.pending, w.conn)
	}
}

// dropWakeUps cancels the wake-up calls pending on c that are not due yet;
// those being made end with c.
func (d *demo) dropWakeUps(c *wsrpc.Conn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cancelLocked(d.pending[c])
}

// cancelLocked stops the timers of the wake-up calls cw that are not due
// yet and forgets them; d.mu is held.
func (d *demo) cancelLocked(cw connWakeUps) {
	for w := range cw {
		if w.timer.Stop() {
			d.forget(w)
			d.wakeUps.Done()
		}
	}
}

// pendingWakeUps returns the number of wake-up calls pending.
func (d *demo) pendingWakeUps() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.nPending
}

// handler routes /ws, /ws/{client_id}, /pubsub and /pubsub/{client_id}
// (fastapi_websocket_pubsub's path) to the WebSocket server.
func (d *demo) handler() http.Handler {
	hm := http.NewServeMux()
	for _, p := range []string{"/ws", "/ws/{client_id}", "/pubsub", "/pubsub/{client_id}"} {
		hm.Handle("GET "+p, d.srv)
	}
	mountWeb(hm)
	return hm
}

// publishTime publishes the time on timeTopic every d.tick until ctx ends.
func (d *demo) publishTime(ctx context.Context) {
	t := time.NewTicker(d.tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if err := d.ps.Publish(ctx, []string{timeTopic}, now.UTC().Format(time.RFC3339)); err != nil && ctx.Err() == nil {
				d.log.Warn("publish the time", "err", err)
			}
		}
	}
}

// serve serves on ln, after printing its URL to stdout, until ctx ends; it
// then shuts down gracefully and returns nil, or the first error. It closes
// ln.
func (d *demo) serve(ctx context.Context, ln net.Listener, stdout io.Writer) error {
	hs := &http.Server{
		Handler:           d.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
	}
	fmt.Fprintf(stdout, "wsrpc: serving on ws://%s/ws\nwsrpc: pub/sub on ws://%[1]s/pubsub\nwsrpc: demo page on http://%[1]s/\n", ln.Addr())
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	if d.metricsLn != nil {
		fmt.Fprintf(stdout, "wsrpc: metrics on http://%s/metrics\n", d.metricsLn.Addr())
		ms := &http.Server{Handler: d.metricsHandler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: hs.ErrorLog}
		var metricsDone sync.WaitGroup
		metricsDone.Go(func() { _ = ms.Serve(d.metricsLn) })
		// The metrics go on until the connections are drained: a
		// scraper sees the shutdown too.
		defer func() {
			ms.Close()
			metricsDone.Wait()
		}()
	}
	tctx, stopTime := context.WithCancel(ctx)
	var ticking sync.WaitGroup
	ticking.Go(func() { d.publishTime(tctx) })

	var err error
	select {
	case err = <-served: // the listener failed
	case <-ctx.Done():
		d.log.Info("shutting down")
	}
	stopTime()
	ticking.Wait()
	serr := d.shutdown(hs)
	if err == nil {
		err = <-served
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	d.stop()
	return errors.Join(err, serr)
}

// shutdown stops hs and drains the WebSocket connections: the calls in
// flight get d.drain to finish. A drain that runs out of time is no error:
// the connections with calls still running are closed, logged at WARN with
// their number, and shutdown waits (up to cutGrace) for their handlers to
// return.
func (d *demo) shutdown(hs *http.Server) error {
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	busy := -1 // connections not drained when the time ran out
	late := make(chan struct{})
	timer := time.AfterFunc(d.drain, func() {
		defer close(late)
		busy = d.busyConns()
		cancel()
	})
	// http.Server.Shutdown stops accepting but ignores WebSockets (hijacked
	// connections); the wsrpc server's Shutdown drains and closes those.
	herr := hs.Shutdown(sctx)
	serr := d.srv.Shutdown(sctx)
	if !timer.Stop() {
		<-late
	}
	if busy < 0 {
		return errors.Join(herr, serr) // drained in time
	}
	if errors.Is(herr, context.Canceled) {
		d.log.Warn("shutdown: drain timed out; closing the HTTP requests still running", "drain", d.drain)
		hs.Close()
		herr = nil
	}
	if errors.Is(serr, context.Canceled) {
		d.log.Warn("shutdown: drain timed out; cutting the calls still running", "drain", d.drain, "conns", busy)
		serr = nil
		d.srv.Close()
		// Shutdown again only waits for the closed connections to end:
		// their handlers have had their contexts canceled.
		gctx, gcancel := context.WithTimeout(context.Background(), cutGrace)
		defer gcancel()
		if d.srv.Shutdown(gctx) != nil {
			d.log.Warn("shutdown: handlers did not return in time after their calls were cut", "grace", cutGrace)
		}
	}
	return errors.Join(herr, serr)
}

// busyConns returns the number of connections that have not ended yet: at
// the end of the drain, those with calls still running (and any still
// waiting for the client's close frame).
func (d *demo) busyConns() int {
	n := 0
	for _, c := range d.srv.Conns() {
		select {
		case <-c.Done():
		default:
			n++
		}
	}
	return n
}

// stop cancels the wake-up calls not due yet and waits for those being
// made.
func (d *demo) stop() {
	d.mu.Lock()
	d.stopped = true
	for _, cw := range d.pending {
		d.cancelLocked(cw)
	}
	d.mu.Unlock()
	d.wakeUps.Wait()
	d.node.Close()
	d.ps.Close()
}
