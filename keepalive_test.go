package wsrpc

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// callSteadily calls echo on c every gap for the given time, and returns
// how many calls were made and the errors of those that failed.
func callSteadily(ctx context.Context, c Caller, gap, d time.Duration) (int, []error) {
	var errs []error
	n := 0
	end := time.Now().Add(d)
	for time.Now().Before(end) && ctx.Err() == nil {
		n++
		var got string
		want := fmt.Sprintf("call %d", n)
		if err := c.Call(ctx, "echo", textArgs{want}, &got); err != nil {
			errs = append(errs, err)
		} else if got != want {
			errs = append(errs, fmt.Errorf("echo %q answered %q", want, got))
		}
		time.Sleep(gap)
	}
	return n, errs
}

// TestClientSurvivesServerPings: a client at its default options stays
// connected to a server that pings every 2 s, through several pings,
// joining out of phase with the server's ping timer and calling several
// times a second. Each pong the client sent used to leave a one-second
// write deadline on its socket, which its own data frames (written past
// gorilla) never moved: the link dropped about a second after each ping.
func TestClientSurvivesServerPings(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	var connects atomic.Int32
	_, u := testServer(t, utilMux(), &ServerOptions{
		ConnOptions: ConnOptions{
			KeepAlive: KeepAlive{Interval: 2 * time.Second},
			OnConnect: func(context.Context, *Conn) error { connects.Add(1); return nil },
		},
	})
	// Start the server's ping timer, then join out of phase with it.
	first := testDial(t, u, &DialOptions{ConnOptions: ConnOptions{KeepAlive: KeepAlive{Interval: -1}}})
	mustEcho(ctx, t, first, "start the keeper")
	time.Sleep(2300 * time.Millisecond)

	var disconnects []error
	var mu sync.Mutex
	cl := testDial(t, u, &DialOptions{
		ConnOptions: ConnOptions{
			OnDisconnect: func(_ *Conn, err error) { mu.Lock(); disconnects = append(disconnects, err); mu.Unlock() },
		},
	})
	conn := cl.Conn()
	n, errs := callSteadily(ctx, cl, 150*time.Millisecond, 6500*time.Millisecond)
	for _, err := range errs {
		t.Errorf("call failed: %v", err)
	}
	if cl.Conn() != conn {
		t.Errorf("the client reconnected during the calls")
	}
	mu.Lock()
	for _, err := range disconnects {
		t.Errorf("the client disconnected: %v", err)
	}
	mu.Unlock()
	if got := connects.Load(); got != 2 {
		t.Errorf("the server saw %d connections, want 2", got)
	}
	t.Logf("%d calls through 3 server pings", n)
}

// TestClientSurvivesForeignPings: the same client against a plain gorilla
// server that pings on its own schedule, as uvicorn does, and answers the
// wsrpc protocol's echo itself.
func TestClientSurvivesForeignPings(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	var pings atomic.Int32
	var wg sync.WaitGroup
	done := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		var wmu sync.Mutex
		stop := make(chan struct{})
		wg.Go(func() { // the server's own ping timer
			tk := time.NewTicker(1500 * time.Millisecond)
			defer tk.Stop()
			for {
				select {
				case <-stop:
					return
				case <-done:
					ws.Close()
					return
				case <-tk.C:
				}
				wmu.Lock()
				err := ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(time.Second))
				wmu.Unlock()
				if err != nil {
					return
				}
				pings.Add(1)
			}
		})
		defer close(stop)
		for {
			_, msg, err := ws.ReadMessage()
			if err != nil {
				return
			}
			reply, ok := seedEchoReply(msg)
			if !ok {
				continue
			}
			wmu.Lock()
			err = ws.WriteMessage(websocket.TextMessage, reply)
			wmu.Unlock()
			if err != nil {
				return
			}
		}
	}))
	defer func() { close(done); hs.Close(); wg.Wait() }()

	var lost atomic.Int32
	cl := testDial(t, "ws"+strings.TrimPrefix(hs.URL, "http"), &DialOptions{
		ConnOptions: ConnOptions{
			OnDisconnect: func(*Conn, error) { lost.Add(1) },
		},
	})
	time.Sleep(700 * time.Millisecond) // out of phase with the ping timer
	_, errs := callSteadily(ctx, cl, 150*time.Millisecond, 5*time.Second)
	for _, err := range errs {
		t.Errorf("call failed: %v", err)
	}
	if lost.Load() != 0 {
		t.Errorf("the client lost its connection %d times", lost.Load())
	}
	if p := pings.Load(); p < 3 {
		t.Errorf("the server sent %d pings, want several", p)
	}
}

// seedEchoReply answers a request for echo in the seed wire protocol, with
// the keep-alive _ping_ answered too; ok is false for anything else.
func seedEchoReply(msg []byte) ([]byte, bool) {
	var m struct {
		Request *struct {
			Method    string `json:"method"`
			Arguments struct {
				Text string `json:"text"`
			} `json:"arguments"`
			CallID string `json:"call_id"`
		} `json:"request"`
	}
	if err := json.Unmarshal(msg, &m); err != nil || m.Request == nil {
		return nil, false
	}
	result, typ := m.Request.Arguments.Text, "str"
	switch m.Request.Method {
	case "echo":
	case "_ping_":
		result = "pong"
	default:
		return nil, false
	}
	b, _ := json.Marshal(map[string]any{"request": nil, "response": map[string]any{
		"result": result, "result_type": typ, "call_id": m.Request.CallID,
	}})
	return b, true
}

// TestClientWriteTimeout: a client whose server stops reading is
// disconnected by its WriteTimeout, with the write's timeout as the cause,
// however its frames are written. It used to leave them queued in its
// socket with no deadline at all.
func TestClientWriteTimeout(t *testing.T) {
	for _, binary := range []bool{false, true} {
		t.Run(fmt.Sprintf("binary=%v", binary), func(t *testing.T) {
			ctx := ctxT(t)
			stopped := make(chan struct{})
			release := make(chan struct{})
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
				if err != nil {
					return
				}
				defer ws.Close()
				close(stopped)
				<-release // never reads: the client's writes fill the sockets
			}))
			defer hs.Close()
			defer close(release)

			const writeTimeout = 300 * time.Millisecond
			lost := make(chan error, 1)
			cl := testDial(t, "ws"+strings.TrimPrefix(hs.URL, "http"), &DialOptions{
				ConnOptions: ConnOptions{
					WriteTimeout: writeTimeout,
					KeepAlive:    KeepAlive{Interval: -1},
					BinaryFrames: binary,
					OnDisconnect: func(_ *Conn, err error) { sendNoWait(lost, err) },
				},
				DisableReconnect: true,
			})
			<-stopped
			big := strings.Repeat("x", 256<<10)
			var wg sync.WaitGroup
			for range 64 { // 16 MiB: more than the sockets hold
				wg.Go(func() {
					cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
					defer cancel()
					cl.Call(cctx, "echo", textArgs{big}, nil)
				})
			}
			err := recv(ctx, t, lost, "the client's OnDisconnect")
			if !isTimeout(err) {
				t.Errorf("disconnected by %v, want a write timeout", err)
			}
			wg.Wait()
		})
	}
}
