package wsrpc

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

// TestSendErrorDetails: with the option, a plain error's text is sent.
func TestSendErrorDetails(t *testing.T) {
	m := NewMux()
	Register(m, "plain", func(context.Context, struct{}) (int, error) { return 0, errors.New("disk full") })
	_, url := testServer(t, m, &ServerOptions{SendErrorDetails: true})
	cl := testDial(t, url, nil)
	_, err := Call[int](ctxT(t), cl, "plain", nil)
	if e, ok := errors.AsType[*Error](err); !ok || e.Code != CodeInternalError || e.Message != "disk full" {
		t.Errorf("plain: %v", err)
	}
}

// TestMaxConcurrentCalls: calls over the cap are answered at once with
// ErrTooManyCalls; the running ones finish; later calls run again.
func TestMaxConcurrentCalls(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 4)
	m := echoMux()
	Register(m, "hold", func(ctx context.Context, _ struct{}) (bool, error) {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return true, nil
	})
	_, url := testServer(t, m, &ServerOptions{MaxConcurrentCalls: 2})
	cl := testDial(t, url, nil)
	ctx := ctxT(t)
	held := make(chan error, 2)
	for range 2 {
		go func() { held <- cl.Call(ctx, "hold", nil, nil) }()
	}
	<-started
	<-started
	_, err := Call[string](ctx, cl, "echo", textArgs{"x"})
	if e, ok := errors.AsType[*Error](err); !ok || e.Code != CodeServerError || e.Message != ErrTooManyCalls.Error() {
		t.Fatalf("third call: %v, want %v", err, ErrTooManyCalls)
	}
	close(release)
	for range 2 {
		if err := <-held; err != nil {
			t.Errorf("held call: %v", err)
		}
	}
	if got, err := Call[string](ctx, cl, "echo", textArgs{"y"}); err != nil || got != "y" {
		t.Errorf("after: %q, %v", got, err)
	}
}

// TestMaxCallBytes: a call whose frame would take the running calls'
// requests over MaxCallBytes is answered at once with ErrTooManyCalls,
// while smaller calls still run; a call arriving alone is always taken.
func TestMaxCallBytes(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 4)
	m := echoMux()
	type padArgs struct {
		Pad string `json:"pad"`
	}
	Register(m, "hold", func(ctx context.Context, a padArgs) (int, error) {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return len(a.Pad), nil
	})
	// The first call's frame (150 KiB) fits alone even though the budget
	// is below two of them.
	_, url := testServer(t, m, &ServerOptions{MaxCallBytes: 290 << 10})
	cl := testDial(t, url, nil)
	ctx := ctxT(t)
	big := padArgs{strings.Repeat("x", 150<<10)}
	held := make(chan error, 1)
	go func() {
		n, err := Call[int](ctx, cl, "hold", big)
		if err == nil && n != len(big.Pad) {
			err = errors.New("wrong length")
		}
		held <- err
	}()
	<-started
	_, err := Call[int](ctx, cl, "hold", big)
	if e, ok := errors.AsType[*Error](err); !ok || e.Code != CodeServerError || e.Message != ErrTooManyCalls.Error() {
		t.Fatalf("second big call: %v, want %v", err, ErrTooManyCalls)
	}
	if got, err := Call[string](ctx, cl, "echo", textArgs{"small"}); err != nil || got != "small" {
		t.Errorf("small call beside the big one: %q, %v", got, err)
	}
	close(release)
	if err := <-held; err != nil {
		t.Errorf("held call: %v", err)
	}
	if n, err := Call[int](ctx, cl, "hold", big); err != nil || n != len(big.Pad) {
		t.Errorf("big call after: %d, %v", n, err)
	}
}

// TestMaxConns: connections over the caps are refused with 503, per
// server and per remote address; a closed connection frees its place.
func TestMaxConns(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts ServerOptions
	}{
		{"per server", ServerOptions{MaxConns: 2}},
		{"per address", ServerOptions{MaxConnsPerAddr: 2}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, url := testServer(t, echoMux(), &tt.opts)
			noRetry := &DialOptions{Retry: RetryOptions{MaxTries: 1}}
			a := testDial(t, url, noRetry)
			testDial(t, url, noRetry)
			_, err := Dial(ctxT(t), url, &DialOptions{Retry: RetryOptions{MaxTries: 1}, Logger: quiet()})
			if he, ok := errors.AsType[*HTTPError](err); !ok || he.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("third Dial: %v, want 503", err)
			}
			open := 2
			if tt.opts.MaxConnsPerAddr > 0 {
				// Another address is welcome.
				d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}}
				testDial(t, url, &DialOptions{NetDialContext: d.DialContext, Retry: RetryOptions{MaxTries: 1}})
				open++
			}
			// A client may return from Dial before the server lists its
			// connection: count them all first.
			waitFor(t, func() bool { return len(srv.Conns()) == open })
			a.Close()
			waitFor(t, func() bool { return len(srv.Conns()) == open-1 })
			testDial(t, url, noRetry)
		})
	}
}

// TestMaxMessageSize: a frame over the limit closes the connection with
// status 1009 (message too big); other connections are unaffected.
func TestMaxMessageSize(t *testing.T) {
	var disconnects errorLog
	_, url := testServer(t, echoMux(), &ServerOptions{MaxMessageSize: 1024, OnDisconnect: disconnects.hook})
	other := testDial(t, url, nil)
	ws := rawDial(t, url)
	big := `{"request": {"method": "echo", "arguments": {"text": "` + strings.Repeat("x", 2000) + `"}, "call_id": "big"}}`
	if err := ws.WriteMessage(websocket.TextMessage, []byte(big)); err != nil {
		t.Fatal(err)
	}
	var err error
	for err == nil {
		_, _, err = ws.ReadMessage()
	}
	if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Fatalf("read after a large frame: %v, want close 1009", err)
	}
	waitFor(t, func() bool { return disconnects.has(websocket.ErrReadLimit) })
	if got, err := Call[string](ctxT(t), other, "echo", textArgs{"ok"}); err != nil || got != "ok" {
		t.Errorf("other connection: %q, %v", got, err)
	}
}
