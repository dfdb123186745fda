package wsrpc

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestShutdownDrains: Shutdown lets a call in flight finish, refuses new
// calls and new connections meanwhile, then closes with 1001.
func TestShutdownDrains(t *testing.T) {
	ctx := ctxT(t)
	started, release := make(chan struct{}, 1), make(chan struct{})
	mux := utilMux()
	mux.HandleFunc("slow", func(ctx context.Context, _ json.RawMessage) (any, error) {
		started <- struct{}{}
		select {
		case <-release:
			return "done", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	srv, u := testServer(t, mux, nil)
	disconnected := make(chan error, 1)
	cl := testDial(t, u, &DialOptions{
		DisableReconnect: true,
		ConnOptions: ConnOptions{
			OnDisconnect: func(_ *Conn, err error) { sendNoWait(disconnected, err) },
		},
	})

	type result struct {
		s   string
		err error
	}
	slow := make(chan result, 1)
	go func() {
		s, err := Call[string](ctx, cl, "slow", nil)
		slow <- result{s, err}
	}()
	recv(ctx, t, started, "the slow handler to start")

	shutdown := make(chan error, 1)
	go func() { shutdown <- srv.Shutdown(ctx) }()

	// Shutdown stops new calls soon after it begins; until then they work.
	var callErr error
	pollUntil(t, "a call to be refused", func() bool {
		got, err := Call[string](ctx, cl, "echo", map[string]string{"text": "x"})
		if err == nil && got != "x" {
			err = errors.New("wrong answer " + got)
		}
		callErr = err
		return err != nil
	})
	if !errors.Is(callErr, ErrShuttingDown) || ErrorCode(callErr) != CodeServerError {
		t.Errorf("call during Shutdown: err = %v, want %v (code %d)", callErr, ErrShuttingDown, CodeServerError)
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := tryDial(dctx, t, u, &DialOptions{Retry: RetryOptions{MaxTries: 1}})
	if he, ok := errors.AsType[*HTTPError](err); !ok || he.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("Dial during Shutdown: err = %v, want an *HTTPError with status 503", err)
	}

	close(release)
	if r := recv(ctx, t, slow, "the slow call"); r.err != nil || r.s != "done" {
		t.Errorf("call in flight during Shutdown = %q, %v; want \"done\"", r.s, r.err)
	}
	if err := recv(ctx, t, shutdown, "Shutdown to return"); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := recv(ctx, t, disconnected, "the client's OnDisconnect"); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Errorf("client OnDisconnect: err = %v, want close status 1001", err)
	}
	if n := len(srv.Conns()); n != 0 {
		t.Errorf("server has %d connections after Shutdown, want 0", n)
	}
	_, err = tryDial(dctx, t, u, &DialOptions{Retry: RetryOptions{MaxTries: 1}})
	if he, ok := errors.AsType[*HTTPError](err); !ok || he.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("Dial after Shutdown: err = %v, want an *HTTPError with status 503", err)
	}
}

// TestShutdownExpiredContext: Shutdown with a context that already ended
// returns its error and ends the connections, canceling the handlers.
func TestShutdownExpiredContext(t *testing.T) {
	ctx := ctxT(t)
	started := make(chan struct{}, 1)
	handlerEnded := make(chan error, 1)
	mux := NewMux()
	mux.HandleFunc("stuck", func(ctx context.Context, _ json.RawMessage) (any, error) {
		started <- struct{}{}
		<-ctx.Done() // never returns before
		handlerEnded <- ctx.Err()
		return nil, ctx.Err()
	})
	srv, u := testServer(t, mux, nil)
	cl := testDial(t, u, &DialOptions{DisableReconnect: true})
	sc := serverConn(t, srv)

	callErr := make(chan error, 1)
	go func() { callErr <- cl.Call(ctx, "stuck", nil, nil) }()
	recv(ctx, t, started, "the handler to start")

	expired, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	if err := srv.Shutdown(expired); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with an expired context: %v, want context.DeadlineExceeded", err)
	}
	if err := recv(ctx, t, handlerEnded, "the handler's context to end"); !errors.Is(err, context.Canceled) {
		t.Errorf("handler context: %v, want context.Canceled", err)
	}
	recv(ctx, t, sc.Done(), "the server's connection to end")
	if err := recv(ctx, t, callErr, "the client's call"); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("client call cut by Shutdown: err = %v, want ErrConnectionLost", err)
	}
	recv(ctx, t, cl.Done(), "the client to end")
}

// lingeringHandler is a method "linger" that, once its context ends, takes
// a while to clean up before it returns, and then records that it did.
func lingeringHandler(m *Mux, started chan<- struct{}, returned *atomic.Bool) {
	m.HandleFunc("linger", func(ctx context.Context, _ json.RawMessage) (any, error) {
		started <- struct{}{}
		<-ctx.Done()
		time.Sleep(200 * time.Millisecond) // cleaning up
		returned.Store(true)
		return nil, ctx.Err()
	})
}

// TestClientCloseWaits: Client.Close returns only once the client's
// handlers have returned and OnDisconnect has run, so that a program's
// final bookkeeping is done when Close returns.
func TestClientCloseWaits(t *testing.T) {
	ctx := ctxT(t)
	started := make(chan struct{}, 1)
	var handlerReturned, disconnectDone atomic.Bool
	methods := NewMux()
	lingeringHandler(methods, started, &handlerReturned)
	srv, u := testServer(t, nil, nil)
	cl := testDial(t, u, &DialOptions{
		Methods: methods,
		ConnOptions: ConnOptions{
			OnDisconnect: func(*Conn, error) {
				time.Sleep(200 * time.Millisecond) // final bookkeeping
				disconnectDone.Store(true)
			},
		},
	})
	sc := serverConn(t, srv)
	go sc.Call(ctx, "linger", nil, nil)
	recv(ctx, t, started, "the client's handler to start")
	cl.Close()
	if !handlerReturned.Load() {
		t.Error("Client.Close returned before the client's handler did")
	}
	if !disconnectDone.Load() {
		t.Error("Client.Close returned before OnDisconnect did")
	}
}

// TestServerCloseWaits: Server.Close and Shutdown return only once the
// server's handlers have returned and OnDisconnect has run.
func TestServerCloseWaits(t *testing.T) {
	for _, how := range []string{"Close", "Shutdown"} {
		t.Run(how, func(t *testing.T) {
			ctx := ctxT(t)
			started := make(chan struct{}, 1)
			var handlerReturned, disconnectDone atomic.Bool
			m := NewMux()
			lingeringHandler(m, started, &handlerReturned)
			srv, u := testServer(t, m, &ServerOptions{
				ConnOptions: ConnOptions{
					OnDisconnect: func(*Conn, error) {
						time.Sleep(200 * time.Millisecond)
						disconnectDone.Store(true)
					},
				},
			})
			cl := testDial(t, u, &DialOptions{DisableReconnect: true})
			go cl.Call(ctx, "linger", nil, nil)
			recv(ctx, t, started, "the server's handler to start")
			if how == "Close" {
				srv.Close()
			} else {
				// An ended context: Shutdown cuts the call short at once,
				// and still waits for the handler to return.
				sctx, cancel := context.WithCancel(ctx)
				cancel()
				if err := srv.Shutdown(sctx); !errors.Is(err, context.Canceled) {
					t.Errorf("Shutdown: %v, want context.Canceled", err)
				}
			}
			if !handlerReturned.Load() {
				t.Errorf("Server.%s returned before the handler did", how)
			}
			if !disconnectDone.Load() {
				t.Errorf("Server.%s returned before OnDisconnect did", how)
			}
		})
	}
}

// TestCloseTimeout: a client closing on a server that never answers its
// close frame, with a short or a negative CloseTimeout, returns, and the
// close frame reaches the server. How long Close waits is
// TestCloseTimeoutExactly's, on the fake clock: here, over a real socket,
// a bound on it would be a timing assertion.
func TestCloseTimeout(t *testing.T) {
	for _, tc := range []struct {
		name    string
		timeout time.Duration
	}{{"short", 200 * time.Millisecond}, {"negative", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxT(t)
			gotClose := make(chan error, 1)
			u := rawPeer(t, func(ctx context.Context, ws *websocket.Conn) {
				ws.SetCloseHandler(func(int, string) error { return nil }) // never answers a close
				_, _, err := ws.ReadMessage()
				gotClose <- err
				<-ctx.Done()
			})
			cl := testDial(t, u, &DialOptions{
				ConnOptions: ConnOptions{
					CloseTimeout: tc.timeout,
					KeepAlive:    KeepAlive{Interval: -1},
				},
			})
			cl.Close()
			err := recv(ctx, t, gotClose, "the server to read the close frame")
			if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
				t.Errorf("the server read %v, want the close frame (1000)", err)
			}
		})
	}
}

// TestCloseWith: Conn.CloseWith closes with the status and reason given,
// which the peer sees; a reason too long for a close frame is cut at a
// character boundary; the closing side's hooks see ErrClosed.
func TestCloseWith(t *testing.T) {
	ctx := ctxT(t)
	serverDown := make(chan error, 2)
	srv, u := testServer(t, utilMux(), &ServerOptions{ConnOptions: ConnOptions{OnDisconnect: func(_ *Conn, err error) { sendNoWait(serverDown, err) }}})
	clientDown := make(chan error, 2)
	testDial(t, u, &DialOptions{DisableReconnect: true, ConnOptions: ConnOptions{OnDisconnect: func(_ *Conn, err error) { sendNoWait(clientDown, err) }}})

	long := strings.Repeat("é", 100) // 200 bytes
	serverConn(t, srv).CloseWith(4008, long)
	err := recv(ctx, t, clientDown, "the client's OnDisconnect")
	ce, ok := errors.AsType[*websocket.CloseError](err)
	if !ok {
		t.Fatalf("client saw %v, want a *websocket.CloseError", err)
	}
	if ce.Code != 4008 {
		t.Errorf("close code %d, want 4008", ce.Code)
	}
	if want := strings.Repeat("é", 61); ce.Text != want {
		t.Errorf("close reason %q (%d bytes), want %d bytes of whole characters", ce.Text, len(ce.Text), len(want))
	}
	if err := recv(ctx, t, serverDown, "the server's OnDisconnect"); !errors.Is(err, ErrClosed) {
		t.Errorf("server's OnDisconnect got %v, want ErrClosed", err)
	}
}
