package wsrpc

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	neturl "net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsrpc/wsrpc/internal/services"
	"github.com/wsrpc/wsrpc/internal/testproxy"
)

// fastRetry reconnects quickly and without end.
var fastRetry = RetryOptions{InitialInterval: 10 * time.Millisecond, MaxInterval: 50 * time.Millisecond}

// serveOn serves srv at /ws on ln until the returned stop function runs
// (or the test ends): stop closes the listener and srv and waits for both.
func serveOn(t *testing.T, ln net.Listener, srv *Server) (stop func()) {
	t.Helper()
	hm := http.NewServeMux()
	hm.Handle("/ws", srv)
	hs := &http.Server{Handler: hm, ErrorLog: log.New(io.Discard, "", 0)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		hs.Serve(ln)
	}()
	stop = sync.OnceFunc(func() {
		hs.Close() // the listener; WebSockets are hijacked and left to srv
		srv.Close()
		<-done
		waitConnsDone(t, srv)
	})
	t.Cleanup(stop)
	return stop
}

// genMux exposes "gen", which returns gen: which server answered.
func genMux(gen int) *Mux {
	m := NewMux()
	Register(m, "gen", func(context.Context, struct{}) (int, error) { return gen, nil })
	return m
}

// holdKeepAlive is the keep-alive of the tests of frozen links: a check
// every 50 ms, and a link dead after 1.05 s of silence. The Timeout is not
// shorter: a healthy link's pongs, through a proxy, on a machine loaded by
// the race detector and other tests, may take hundreds of milliseconds.
var holdKeepAlive = KeepAlive{Interval: 50 * time.Millisecond, Timeout: time.Second}

// holdMux exposes the utilities and "hold", which answers after 1.5 s: a
// call during which a healthy link must pass many holdKeepAlive checks,
// and outlast its Interval+Timeout, with no other frames.
func holdMux() *Mux {
	m := utilMux()
	m.HandleFunc("hold", func(ctx context.Context, _ json.RawMessage) (any, error) {
		select {
		case <-time.After(1500 * time.Millisecond):
			return "held", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	return m
}

// sendNoWait sends v on ch unless ch is full: for hooks, which must not
// block.
func sendNoWait[T any](ch chan<- T, v T) {
	select {
	case ch <- v:
	default:
	}
}

// TestReconnectAfterServerRestart kills the server while a client keeps
// calling and starts a new one on the same port: the client reconnects by
// itself, and no call hangs.
func TestReconnectAfterServerRestart(t *testing.T) {
	for _, waitForReady := range []bool{false, true} {
		name := "fail fast"
		if waitForReady {
			name = "wait for ready"
		}
		t.Run(name, func(t *testing.T) {
			ctx := ctxT(t)
			// A port below the ephemeral range: one from listen(":0"),
			// once closed, could be taken meanwhile as the source port of
			// any connection, of this process or another test binary's.
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(services.FreePort(t)))
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			stop1 := serveOn(t, ln, mustServer(t, genMux(1), &ServerOptions{ConnOptions: ConnOptions{Logger: quiet()}}))

			var connects atomic.Int32
			disconnected := make(chan error, 4)
			cl := testDial(t, "ws://"+addr+"/ws", &DialOptions{
				WaitForReady: waitForReady,
				Retry:        fastRetry,
				ConnOptions: ConnOptions{
					OnConnect:    func(context.Context, *Conn) error { connects.Add(1); return nil },
					OnDisconnect: func(_ *Conn, err error) { sendNoWait(disconnected, err) },
				},
			})
			if g, err := Call[int](ctx, cl, "gen", nil); err != nil || g != 1 {
				t.Fatalf("gen = %d, %v; want 1", g, err)
			}

			// A caller that keeps calling through the restart. Each call is
			// bounded: a hang shows as a deadline error.
			stopCalls := make(chan struct{})
			sawGen2, sawNotConnected := make(chan struct{}), make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				var once2, onceNC sync.Once
				for {
					select {
					case <-stopCalls:
						return
					default:
					}
					cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					g, err := Call[int](cctx, cl, "gen", nil)
					cancel()
					switch {
					case err == nil && g == 2:
						once2.Do(func() { close(sawGen2) })
					case err == nil:
					case !waitForReady && errors.Is(err, ErrNotConnected):
						onceNC.Do(func() { close(sawNotConnected) })
					case errors.Is(err, ErrConnectionLost): // in flight when the server went
					default:
						t.Errorf("call during the restart: %v", err)
						return
					}
				}
			})

			stop1()
			recv(ctx, t, disconnected, "OnDisconnect")
			waited := make(chan error, 1)
			if waitForReady {
				pollUntil(t, "the client to notice", func() bool { return cl.Conn() == nil })
				go func() {
					g, err := Call[int](ctx, cl, "gen", nil)
					if err == nil && g != 2 {
						err = errors.New("answered by the old server")
					}
					waited <- err
				}()
			} else {
				recv(ctx, t, sawNotConnected, "a call failing with ErrNotConnected while the server is down")
			}

			ln2, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatalf("listening again on %s: %v", addr, err)
			}
			serveOn(t, ln2, mustServer(t, genMux(2), &ServerOptions{ConnOptions: ConnOptions{Logger: quiet()}}))
			recv(ctx, t, sawGen2, "a call answered by the new server")
			if waitForReady {
				if err := recv(ctx, t, waited, "the call made while disconnected"); err != nil {
					t.Errorf("call made while disconnected, with WaitForReady: %v", err)
				}
			}
			close(stopCalls)
			wg.Wait()

			if g, err := Call[int](ctx, cl, "gen", nil); err != nil || g != 2 {
				t.Errorf("gen after the restart = %d, %v; want 2", g, err)
			}
			if n := connects.Load(); n != 2 {
				t.Errorf("OnConnect ran %d times, want 2", n)
			}
			cl.Close()
		})
	}
}

// TestCallInFlightLost cuts the link under a call that is running: the
// call fails with ErrConnectionLost, the handler's context ends, and the
// client reconnects.
func TestCallInFlightLost(t *testing.T) {
	ctx := ctxT(t)
	started := make(chan struct{}, 1)
	handlerEnded := make(chan error, 1)
	mux := utilMux()
	mux.HandleFunc("block", func(ctx context.Context, _ json.RawMessage) (any, error) {
		started <- struct{}{}
		<-ctx.Done()
		handlerEnded <- ctx.Err()
		return nil, ctx.Err()
	})
	_, u := testServer(t, mux, nil)
	proxy := testproxy.New(t, hostOf(t, u))
	cl := testDial(t, "ws://"+proxy.Addr()+"/ws", &DialOptions{WaitForReady: true, Retry: fastRetry})

	errc := make(chan error, 1)
	go func() { errc <- cl.Call(ctx, "block", nil, nil) }()
	recv(ctx, t, started, "the handler to start")
	proxy.CutAll()
	if err := recv(ctx, t, errc, "the call to fail"); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("call in flight on a cut link: err = %v, want ErrConnectionLost", err)
	}
	// Retried at once, as a caller would: with WaitForReady the retry waits
	// for the new connection.
	mustEcho(ctx, t, cl, "after the cut")
	if err := recv(ctx, t, handlerEnded, "the server's handler to end"); !errors.Is(err, context.Canceled) {
		t.Errorf("handler context: %v, want context.Canceled", err)
	}
	if n := proxy.Accepted(); n != 2 {
		t.Errorf("proxy accepted %d connections, want 2", n)
	}
}

// TestKeepAliveDetectsFrozenLink freezes the link under an idle client:
// keep-alive finds it dead, and the client reconnects once it flows again.
func TestKeepAliveDetectsFrozenLink(t *testing.T) {
	ctx := ctxT(t)
	_, u := testServer(t, holdMux(), nil)
	proxy := testproxy.New(t, hostOf(t, u))
	connected := make(chan struct{}, 4)
	disconnected := make(chan error, 4)
	cl := testDial(t, "ws://"+proxy.Addr()+"/ws", &DialOptions{
		ConnOptions: ConnOptions{
			KeepAlive:    holdKeepAlive,
			OnConnect:    func(context.Context, *Conn) error { sendNoWait(connected, struct{}{}); return nil },
			OnDisconnect: func(_ *Conn, err error) { sendNoWait(disconnected, err) },
		},
		Retry:        fastRetry,
		WaitForReady: true,
	})
	recv(ctx, t, connected, "the first OnConnect")
	if err := cl.Call(ctx, "hold", nil, nil); err != nil {
		t.Fatalf("a call outlasting several keep-alive periods on a healthy link: %v", err)
	}

	proxy.Freeze()
	if err := recv(ctx, t, disconnected, "OnDisconnect"); !errors.Is(err, ErrKeepAliveTimeout) {
		t.Errorf("OnDisconnect: err = %v, want ErrKeepAliveTimeout", err)
	}
	proxy.Thaw()
	recv(ctx, t, connected, "the second OnConnect")
	mustEcho(ctx, t, cl, "after the thaw")
}

// TestServerKeepAliveDropsFrozenClient: a server with keep-alive drops a
// client whose link went silent.
func TestServerKeepAliveDropsFrozenClient(t *testing.T) {
	ctx := ctxT(t)
	disconnected := make(chan error, 1)
	_, u := testServer(t, holdMux(), &ServerOptions{
		ConnOptions: ConnOptions{
			KeepAlive:    holdKeepAlive,
			OnDisconnect: func(_ *Conn, err error) { sendNoWait(disconnected, err) },
		},
	})
	proxy := testproxy.New(t, hostOf(t, u))
	cl := testDial(t, "ws://"+proxy.Addr()+"/ws", &DialOptions{
		ConnOptions: ConnOptions{
			KeepAlive: KeepAlive{Interval: -1}, // the client stays silent
		},
		DisableReconnect: true,
	})
	if err := cl.Call(ctx, "hold", nil, nil); err != nil {
		t.Fatalf("a call outlasting several keep-alive periods on a healthy link: %v", err)
	}

	proxy.Freeze()
	if err := recv(ctx, t, disconnected, "the server's OnDisconnect"); !errors.Is(err, ErrKeepAliveTimeout) {
		t.Errorf("server OnDisconnect: err = %v, want ErrKeepAliveTimeout", err)
	}
	proxy.Thaw() // the client learns that the server closed
	recv(ctx, t, cl.Done(), "the client to end")
}

// TestDisableReconnect: a client with DisableReconnect ends when its
// connection does, and says why.
func TestDisableReconnect(t *testing.T) {
	tests := []struct {
		name    string
		goAway  func(*Server, *testproxy.Proxy)
		wantErr func(error) bool
	}{
		{
			name:    "server closes",
			goAway:  func(s *Server, _ *testproxy.Proxy) { s.Close() },
			wantErr: func(err error) bool { return websocket.IsCloseError(err, websocket.CloseGoingAway) },
		},
		{
			name:    "link cut",
			goAway:  func(_ *Server, p *testproxy.Proxy) { p.CutAll() },
			wantErr: func(err error) bool { return err != nil && !errors.Is(err, ErrClosed) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxT(t)
			srv, u := testServer(t, utilMux(), nil)
			proxy := testproxy.New(t, hostOf(t, u))
			cl := testDial(t, "ws://"+proxy.Addr()+"/ws", &DialOptions{DisableReconnect: true, Retry: fastRetry})
			mustEcho(ctx, t, cl, "before")

			tt.goAway(srv, proxy)
			recv(ctx, t, cl.Done(), "Done")
			if err := cl.Err(); !tt.wantErr(err) {
				t.Errorf("Err() = %v", err)
			}
			if err := cl.Call(ctx, "echo", map[string]string{"text": "x"}, nil); err == nil {
				t.Error("a call on an ended client succeeded")
			}
			if n := proxy.Accepted(); n != 1 {
				t.Errorf("proxy accepted %d connections, want 1 (no reconnect)", n)
			}
		})
	}
}

// TestClientCloseFromHandler: Client.Close called by one of the client's
// own handlers returns, and ends the client.
func TestClientCloseFromHandler(t *testing.T) {
	ctx := ctxT(t)
	var clp atomic.Pointer[Client]
	closeReturned := make(chan error, 1)
	methods := NewMux()
	methods.HandleFunc("close_me", func(context.Context, json.RawMessage) (any, error) {
		closeReturned <- clp.Load().Close()
		return "closed", nil
	})
	srv, u := testServer(t, nil, nil)
	cl := testDial(t, u, &DialOptions{Methods: methods})
	clp.Store(cl)

	sc := serverConn(t, srv)
	callDone := make(chan error, 1)
	go func() { callDone <- sc.Call(ctx, "close_me", nil, nil) }()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := recv(wctx, t, closeReturned, "Close called from a handler to return"); err != nil {
		t.Errorf("Close: %v", err)
	}
	recv(wctx, t, cl.Done(), "Done")
	if err := cl.Err(); !errors.Is(err, ErrClosed) {
		t.Errorf("Err() = %v, want ErrClosed", err)
	}
	recv(wctx, t, callDone, "the server's call to return")
}

// TestClientCloseFromOnConnect: Client.Close called from OnConnect, on a
// reconnect, returns and ends the client.
func TestClientCloseFromOnConnect(t *testing.T) {
	ctx := ctxT(t)
	var clp atomic.Pointer[Client]
	var connects atomic.Int32
	closeReturned := make(chan error, 1)
	srv, u := testServer(t, nil, nil)
	cl := testDial(t, u, &DialOptions{
		Retry: fastRetry,
		ConnOptions: ConnOptions{
			OnConnect: func(context.Context, *Conn) error {
				if connects.Add(1) == 2 {
					closeReturned <- clp.Load().Close()
				}
				return nil
			},
		},
	})
	clp.Store(cl)
	serverConn(t, srv).Close() // the client reconnects

	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := recv(wctx, t, closeReturned, "Close called from OnConnect to return"); err != nil {
		t.Errorf("Close: %v", err)
	}
	recv(wctx, t, cl.Done(), "Done")
	if err := cl.Err(); !errors.Is(err, ErrClosed) {
		t.Errorf("Err() = %v, want ErrClosed", err)
	}
}

// TestCloseDuringStalledReconnect: Client.Close returns while a
// reconnect's handshake is stalled on a silent link, long before the
// handshake timeout.
func TestCloseDuringStalledReconnect(t *testing.T) {
	ctx := ctxT(t)
	_, u := testServer(t, utilMux(), nil)
	proxy := testproxy.New(t, hostOf(t, u))
	disconnected := make(chan error, 4)
	cl := testDial(t, "ws://"+proxy.Addr()+"/ws", &DialOptions{
		ConnOptions: ConnOptions{
			KeepAlive:    KeepAlive{Interval: 50 * time.Millisecond, Timeout: 100 * time.Millisecond},
			OnDisconnect: func(_ *Conn, err error) { sendNoWait(disconnected, err) },
		},
		Retry: fastRetry,
		// Past the test's end: Close returning at all while the proxy
		// holds the handshake shows it does not wait for it.
		HandshakeTimeout: time.Hour,
	})
	proxy.Freeze()
	recv(ctx, t, disconnected, "OnDisconnect")
	pollUntil(t, "the reconnect to reach the proxy", func() bool { return proxy.Accepted() == 2 })

	closed := make(chan struct{})
	go func() {
		defer close(closed)
		cl.Close()
	}()
	select {
	case <-closed:
	case <-ctx.Done():
		t.Error("Client.Close did not return while a reconnect handshake was stalled")
		proxy.Thaw() // let the handshake finish, so that Close can return
		<-closed
	}
}

// TestDialCanceledDuringStalledHandshake: Dial returns when its context
// is canceled while the handshake is stalled, long before the handshake
// timeout.
func TestDialCanceledDuringStalledHandshake(t *testing.T) {
	ctx := ctxT(t)
	_, u := testServer(t, utilMux(), nil)
	proxy := testproxy.New(t, hostOf(t, u))
	proxy.Freeze()

	dctx, cancelDial := context.WithCancel(ctx)
	type result struct {
		cl  *Client
		err error
	}
	done := make(chan result, 1)
	go func() {
		cl, err := Dial(dctx, "ws://"+proxy.Addr()+"/ws", &DialOptions{ConnOptions: ConnOptions{Logger: quiet()}, HandshakeTimeout: time.Hour})
		done <- result{cl, err}
	}()
	pollUntil(t, "the dial to reach the proxy", func() bool { return proxy.Accepted() == 1 })
	cancelDial()

	// HandshakeTimeout is past the test's end: Dial returning at all while
	// the proxy holds the handshake shows it heeds its context.
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Error("Dial did not return on its context's cancellation while the handshake was stalled")
		proxy.Thaw()
		r = <-done
	}
	if r.cl != nil {
		r.cl.Close()
	}
	if !errors.Is(r.err, context.Canceled) {
		t.Errorf("Dial: err = %v, want context.Canceled", r.err)
	}
}

// TestIdempotentRetried: a call made with CallOptions.Idempotent whose link
// is cut before its answer is sent again on the next connection and
// succeeds; a plain call fails with ErrConnectionLost and runs once.
func TestIdempotentRetried(t *testing.T) {
	var runs atomic.Int32
	cut := make(chan struct{}, 1)
	m := echoMux()
	Register(m, "once_cut", func(ctx context.Context, _ struct{}) (int32, error) {
		n := runs.Add(1)
		if n == 1 {
			cut <- struct{}{}
			<-ctx.Done() // the link is cut under this call
			return 0, ctx.Err()
		}
		return n, nil
	})
	_, url := testServer(t, m, nil)
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	p := testproxy.New(t, u.Host)
	ctx := ctxT(t)
	go func() { // cut the link under each first run
		for {
			select {
			case <-cut:
				p.CutAll()
			case <-ctx.Done():
				return
			}
		}
	}()
	cl := testDial(t, "ws://"+p.Addr()+"/ws", &DialOptions{Retry: RetryOptions{InitialInterval: 10 * time.Millisecond}})
	var got int32
	err = cl.CallWith(ctxT(t), "once_cut", nil, &got, CallOptions{Idempotent: true})
	if err != nil || got != 2 {
		t.Fatalf("idempotent call: %d, %v; want 2 (run twice)", got, err)
	}

	runs.Store(0)
	_, err = Call[int32](ctxT(t), cl, "once_cut", nil)
	if !errors.Is(err, ErrConnectionLost) || runs.Load() != 1 {
		t.Fatalf("plain call: %v after %d runs; want ErrConnectionLost after 1", err, runs.Load())
	}
}
