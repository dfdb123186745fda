package wsrpc

import (
	"context"
	"errors"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestSendErrorDetails: with the option, a plain error's text is sent.
func TestSendErrorDetails(t *testing.T) {
	m := NewMux()
	Register(m, "plain", func(context.Context, struct{}) (int, error) { return 0, errors.New("disk full") })
	_, url := testServer(t, m, &ServerOptions{ConnOptions: ConnOptions{SendErrorDetails: true}})
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
	Register(m, "hold", hold(started, release))
	_, url := testServer(t, m, &ServerOptions{ConnOptions: ConnOptions{MaxConcurrentCalls: 2}})
	cl := testDial(t, url, nil)
	ctx := ctxT(t)
	held := make(chan error, 2)
	for range 2 {
		go func() { held <- cl.Call(ctx, "hold", nil, nil) }()
	}
	<-started
	<-started
	_, err := Call[string](ctx, cl, "echo", textArgs{"x"})
	if !errors.Is(err, ErrTooManyCalls) || ErrorCode(err) != CodeServerError {
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
	_, url := testServer(t, m, &ServerOptions{ConnOptions: ConnOptions{MaxCallBytes: 290 << 10}})
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
	if !errors.Is(err, ErrTooManyCalls) || ErrorCode(err) != CodeServerError {
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
			_, err := Dial(ctxT(t), url, &DialOptions{Retry: RetryOptions{MaxTries: 1}, ConnOptions: ConnOptions{Logger: quiet()}})
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
			// Once the server lists a connection no more, its place is
			// free: one try gets it.
			testDial(t, url, noRetry)
		})
	}
}

// TestMaxMessageSize: a frame over the limit closes the connection with
// status 1009 (message too big); other connections are unaffected.
func TestMaxMessageSize(t *testing.T) {
	var disconnects errorLog
	_, url := testServer(t, echoMux(), &ServerOptions{ConnOptions: ConnOptions{MaxMessageSize: 1024, OnDisconnect: disconnects.hook}})
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

// TestPeerThatStopsReadingMemoryBound: a peer that sends echo calls of
// nearly MaxMessageSize and never reads its socket holds no more of the
// server than the documented bound (MaxMessageSize for the frame being
// read, MaxCallBytes for the running calls' requests and waiting answers,
// SendQueueBytes for the queue), while another client on the same server
// is served as usual. With a send queue bounded only in frames, the same
// peer held one answer per queue slot: about 250 MiB here.
func TestPeerThatStopsReadingMemoryBound(t *testing.T) {
	const (
		maxMessage = 1 << 20
		maxCall    = 4 << 20
		queueBytes = 1 << 20
		bound      = maxMessage + maxCall + queueBytes
		slack      = 4 << 20 // socket batches, pools, the test's own allocations
	)
	srv, u := testServer(t, utilMux(), &ServerOptions{
		ConnOptions: ConnOptions{
			KeepAlive:      KeepAlive{Interval: -1},
			WriteTimeout:   time.Minute, // the test ends the peer itself
			MaxMessageSize: maxMessage,
			MaxCallBytes:   maxCall,
			SendQueueBytes: queueBytes,
		},
	})
	other := testDial(t, u, nil)
	ctx := ctxT(t)
	mustEcho(ctx, t, other, "before")

	ws, _, err := (&websocket.Dialer{ReadBufferSize: 1024, WriteBufferSize: 1024}).DialContext(ctx, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("x", maxMessage-200)
	frame := []byte(`{"request":{"method":"echo","arguments":{"text":"` + text + `"},"call_id":"1"}}`)

	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)

	const frames = 300 // 300 MiB: far more than the sockets hold
	var sent atomic.Int32
	sender := make(chan struct{})
	go func() {
		defer close(sender)
		for range frames {
			if ws.WriteMessage(websocket.TextMessage, frame) != nil {
				return
			}
			sent.Add(1)
		}
	}()
	// Sample the server's heap until the peer sent everything or has been
	// held up (no frame taken) for a second: the server stopped reading.
	var peak uint64
	last, lastAt := int32(-1), time.Now()
	for {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
		n := sent.Load()
		if n == frames {
			break
		}
		if n != last {
			last, lastAt = n, time.Now()
		} else if time.Since(lastAt) > time.Second {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// What the server holds now, garbage collected: the peer is stalled,
	// so nothing moves.
	runtime.GC()
	var held runtime.MemStats
	runtime.ReadMemStats(&held)
	grew := int64(held.HeapAlloc) - int64(base.HeapAlloc)
	t.Logf("peer sent %d frames of %d KiB before the server stopped reading; the server holds %.1f MiB more (bound %.0f MiB + %.0f MiB slack; peak in use with garbage %.1f MiB more)",
		sent.Load(), len(frame)>>10, float64(grew)/(1<<20), float64(bound)/(1<<20), float64(slack)/(1<<20),
		float64(int64(peak)-int64(base.HeapInuse))/(1<<20))
	if grew > bound+slack {
		t.Errorf("a peer that does not read held %.1f MiB, over the bound of %.0f MiB", float64(grew)/(1<<20), float64(bound)/(1<<20))
	}
	if sent.Load() == frames {
		t.Errorf("the server read all %d frames from a peer that reads nothing", frames)
	}
	mustEcho(ctx, t, other, "meanwhile") // another connection is not held up

	ws.Close() // the peer goes; its connection ends and frees what it held
	<-sender
	pollUntil(t, "the peer's connection to end", func() bool { return len(srv.Conns()) == 1 })
}
