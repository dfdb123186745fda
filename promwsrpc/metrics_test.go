package promwsrpc_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/promwsrpc"
)

type textArgs struct {
	Text string `json:"text"`
}

// TestMetrics: a server and a client over a real loopback socket, each
// with a Metrics, make real calls both ways: successes, a remote error,
// a handler's plain error, an unknown method, a call refused over
// MaxConcurrentCalls, a server's callback to its client; then the link
// is cut under the client, which reconnects, and the client closes. The
// server's metrics, scraped over HTTP from promhttp with a real client,
// and the client's, gathered from its registry, have exactly the values
// these calls and connections give: each call counted in the direction
// it went (a callback is a client call on the server), refused calls only
// as refused, the unknown method as "unknown", the same frames and bytes
// sent by one side as received by the other, the connections by cause,
// the connect tries, and empty send queues at the end.
func TestMetrics(t *testing.T) {
	ctx := t.Context()
	srvMetrics, cliMetrics := promwsrpc.New(nil), promwsrpc.New(nil)
	srvReg, cliReg := prometheus.NewRegistry(), prometheus.NewRegistry()
	srvReg.MustRegister(srvMetrics)
	cliReg.MustRegister(cliMetrics)

	entered, release := make(chan struct{}, 1), make(chan struct{})
	mux := wsrpc.NewMux()
	wsrpc.Register(mux, "echo", func(_ context.Context, a textArgs) (string, error) { return a.Text, nil })
	wsrpc.Register(mux, "fail", func(context.Context, struct{}) (string, error) {
		return "", wsrpc.Errorf(42, "failed as asked")
	})
	wsrpc.Register(mux, "crash", func(context.Context, struct{}) (string, error) {
		return "", errors.New("a plain error") // sent as InternalError
	})
	wsrpc.Register(mux, "block", func(context.Context, struct{}) (string, error) {
		entered <- struct{}{}
		<-release
		return "released", nil
	})
	wsrpc.Register(mux, "ask", func(ctx context.Context, _ struct{}) (string, error) {
		return wsrpc.Call[string](ctx, wsrpc.ConnFromContext(ctx), "whoami", nil)
	})
	srvUp, srvDown := make(chan struct{}, 4), make(chan error, 4)
	srv, err := wsrpc.NewServer(mux, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{
		Observer:           srvMetrics,
		Logger:             quiet,
		KeepAlive:          noKeepAlive,
		MaxConcurrentCalls: 1,
		OnConnect:          func(context.Context, *wsrpc.Conn) error { srvUp <- struct{}{}; return nil },
		OnDisconnect:       func(_ *wsrpc.Conn, err error) { srvDown <- err },
	}})
	if err != nil {
		t.Fatal(err)
	}
	hs := testServer(t, srv, srvReg)

	methods := wsrpc.NewMux()
	wsrpc.Register(methods, "whoami", func(context.Context, struct{}) (string, error) { return "gopher", nil })
	sockets := make(chan net.Conn, 4) // the client's TCP connections
	cliUp, cliDown := make(chan struct{}, 4), make(chan error, 4)
	cl, err := wsrpc.Dial(ctx, wsURL(hs), &wsrpc.DialOptions{
		ConnOptions: wsrpc.ConnOptions{
			Observer:     cliMetrics,
			Logger:       quiet,
			KeepAlive:    noKeepAlive,
			OnConnect:    func(context.Context, *wsrpc.Conn) error { cliUp <- struct{}{}; return nil },
			OnDisconnect: func(_ *wsrpc.Conn, err error) { cliDown <- err },
		},
		Methods: methods,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := new(net.Dialer).DialContext(ctx, network, addr)
			if err == nil {
				sockets <- c
			}
			return c, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recv(t, cliUp, "client connect")
	recv(t, srvUp, "server connect")

	for range 3 {
		if got, err := wsrpc.Call[string](ctx, cl, "echo", textArgs{"hi"}); err != nil || got != "hi" {
			t.Fatalf("echo = %q, %v", got, err)
		}
	}
	if _, err := wsrpc.Call[string](ctx, cl, "fail", nil); wsrpc.ErrorCode(err) != 42 {
		t.Fatalf("fail: %v, want code 42", err)
	}
	if _, err := wsrpc.Call[string](ctx, cl, "crash", nil); wsrpc.ErrorCode(err) != wsrpc.CodeInternalError {
		t.Fatalf("crash: %v, want an internal error", err)
	}
	if _, err := wsrpc.Call[string](ctx, cl, "nope", nil); wsrpc.ErrorCode(err) != wsrpc.CodeMethodNotFound {
		t.Fatalf("nope: %v, want method not found", err)
	}
	if got, err := wsrpc.Call[string](ctx, cl, "ask", nil); err != nil || got != "gopher" {
		t.Fatalf("ask = %q, %v", got, err)
	}
	// One call runs (MaxConcurrentCalls is 1): the next is refused.
	blocked := make(chan error, 1)
	go func() { _, err := wsrpc.Call[string](ctx, cl, "block", nil); blocked <- err }()
	recv(t, entered, "block running")
	if _, err := wsrpc.Call[string](ctx, cl, "echo", textArgs{"refused"}); !errors.Is(err, wsrpc.ErrTooManyCalls) {
		t.Fatalf("echo while block runs: %v, want ErrTooManyCalls", err)
	}
	close(release)
	if err := recv(t, blocked, "block's answer"); err != nil {
		t.Fatalf("block: %v", err)
	}

	// The link drops under the client: both sides see it lost, and the
	// client reconnects at once.
	recv(t, sockets, "the client's socket").Close()
	if err := recv(t, cliDown, "client disconnect"); errors.Is(err, wsrpc.ErrClosed) {
		t.Fatalf("client disconnected by %v, want a lost link", err)
	}
	recv(t, srvDown, "server disconnect")
	recv(t, cliUp, "client reconnect")
	recv(t, srvUp, "server sees the reconnect")
	cl.Close()
	recv(t, cliDown, "client disconnect on Close")
	recv(t, srvDown, "server disconnect on Close")

	s := scrape(t, hs.Client(), hs.URL+"/metrics")
	c := gather(t, cliReg)

	expect(t, "server", s, map[string]float64{
		`wsrpc_server_started_total{method="echo"}`:                              3,
		`wsrpc_server_started_total{method="fail"}`:                              1,
		`wsrpc_server_started_total{method="crash"}`:                             1,
		`wsrpc_server_started_total{method="block"}`:                             1,
		`wsrpc_server_started_total{method="ask"}`:                               1,
		`wsrpc_server_handled_total{code="OK",method="echo"}`:                    3,
		`wsrpc_server_handled_total{code="42",method="fail"}`:                    1,
		`wsrpc_server_handled_total{code="InternalError",method="crash"}`:        1,
		`wsrpc_server_handled_total{code="OK",method="block"}`:                   1,
		`wsrpc_server_handled_total{code="OK",method="ask"}`:                     1,
		`wsrpc_server_handling_seconds_count{method="echo"}`:                     3,
		`wsrpc_server_handling_seconds_count{method="ask"}`:                      1,
		`wsrpc_server_refused_total{method="unknown",reason="method_not_found"}`: 1,
		`wsrpc_server_refused_total{method="echo",reason="too_many_calls"}`:      1,
		// The callback to the client is a client call on the server.
		`wsrpc_client_started_total{method="whoami"}`:           1,
		`wsrpc_client_handled_total{code="OK",method="whoami"}`: 1,
		`wsrpc_client_handling_seconds_count{method="whoami"}`:  1,
		`wsrpc_connections_open`:                                0,
		`wsrpc_connections_opened_total`:                        2,
		`wsrpc_connections_closed_total{cause="lost"}`:          1,
		`wsrpc_connections_closed_total{cause="normal"}`:        1,
		`wsrpc_connections_closed_total{cause="closed"}`:        0,
		`wsrpc_connections_closed_total{cause="error"}`:         0,
		`wsrpc_connect_tries_total{outcome="ok"}`:               0,
		`wsrpc_send_queue_frames`:                               0,
		`wsrpc_send_queue_bytes`:                                0,
		// 9 answers and the callback's request.
		`wsrpc_frames_sent_total`:     10,
		`wsrpc_frames_received_total`: 10,
	})
	absent(t, "server", s, `wsrpc_server_started_total{method="nope"}`, `wsrpc_server_handled_total{code="MethodNotFound"`)

	expect(t, "client", c, map[string]float64{
		`wsrpc_client_started_total{method="echo"}`:                       4,
		`wsrpc_client_started_total{method="nope"}`:                       1,
		`wsrpc_client_handled_total{code="OK",method="echo"}`:             3,
		`wsrpc_client_handled_total{code="ServerError",method="echo"}`:    1,
		`wsrpc_client_handled_total{code="42",method="fail"}`:             1,
		`wsrpc_client_handled_total{code="InternalError",method="crash"}`: 1,
		`wsrpc_client_handled_total{code="MethodNotFound",method="nope"}`: 1,
		`wsrpc_client_handled_total{code="OK",method="block"}`:            1,
		`wsrpc_client_handled_total{code="OK",method="ask"}`:              1,
		`wsrpc_client_handling_seconds_count{method="echo"}`:              4,
		`wsrpc_server_started_total{method="whoami"}`:                     1,
		`wsrpc_server_handled_total{code="OK",method="whoami"}`:           1,
		`wsrpc_connections_open`:                                          0,
		`wsrpc_connections_opened_total`:                                  2,
		`wsrpc_connections_closed_total{cause="lost"}`:                    1,
		`wsrpc_connections_closed_total{cause="closed"}`:                  1,
		`wsrpc_connections_closed_total{cause="normal"}`:                  0,
		`wsrpc_connect_tries_total{outcome="ok"}`:                         2,
		`wsrpc_connect_tries_total{outcome="error"}`:                      0,
		`wsrpc_send_queue_frames`:                                         0,
		`wsrpc_send_queue_bytes`:                                          0,
		`wsrpc_frames_dropped_total`:                                      0,
		`wsrpc_frames_sent_total`:                                         10, // 9 requests and the callback\'s answer
		`wsrpc_frames_received_total`:                                     10,
	})
	absent(t, "client", c, `wsrpc_server_refused_total`)

	// What one side wrote, the other read.
	if s["wsrpc_sent_bytes_total"] != c["wsrpc_received_bytes_total"] || c["wsrpc_sent_bytes_total"] != s["wsrpc_received_bytes_total"] ||
		s["wsrpc_sent_bytes_total"] == 0 || c["wsrpc_sent_bytes_total"] == 0 {
		t.Errorf("bytes: server sent %v, client received %v; client sent %v, server received %v",
			s["wsrpc_sent_bytes_total"], c["wsrpc_received_bytes_total"], c["wsrpc_sent_bytes_total"], s["wsrpc_received_bytes_total"])
	}
}

// TestConnectTries: a Client's failed connect tries count by outcome: a
// URL that answers 404 (final on Dial's first connect: one try), and a
// port where nothing listens (two tries with MaxTries 2).
func TestConnectTries(t *testing.T) {
	ctx := t.Context()
	m := promwsrpc.New(nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	srv, err := wsrpc.NewServer(wsrpc.NewMux(), &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{Logger: quiet}})
	if err != nil {
		t.Fatal(err)
	}
	hs := testServer(t, srv, nil)
	opts := &wsrpc.DialOptions{
		ConnOptions: wsrpc.ConnOptions{Observer: m, Logger: quiet},
		Retry:       wsrpc.RetryOptions{MaxTries: 2, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond},
	}
	if _, err := wsrpc.Dial(ctx, wsURL(hs)+"/nowhere", opts); err == nil {
		t.Fatal("Dial of a 404 URL succeeded")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if _, err := wsrpc.Dial(ctx, "ws://"+addr+"/ws", opts); err == nil {
		t.Fatal("Dial of a closed port succeeded")
	}
	expect(t, "client", gather(t, reg), map[string]float64{
		`wsrpc_connect_tries_total{outcome="ok"}`:                0,
		`wsrpc_connect_tries_total{outcome="http_error"}`:        1,
		`wsrpc_connect_tries_total{outcome="error"}`:             2,
		`wsrpc_connect_tries_total{outcome="handshake_timeout"}`: 0,
		`wsrpc_connect_tries_total{outcome="canceled"}`:          0,
		`wsrpc_connections_opened_total`:                         0,
	})
}
