package wsrpc

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
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
// TestClientSurvivesServerPingsAnyPhase checks many phases on the fake
// clock; this test keeps a real socket under one.
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
	u := rawPeer(t, func(ctx context.Context, ws *websocket.Conn) {
		var wmu sync.Mutex
		var wg sync.WaitGroup
		defer wg.Wait()
		stop := make(chan struct{})
		wg.Go(func() { // the server's own ping timer
			tk := time.NewTicker(1500 * time.Millisecond)
			defer tk.Stop()
			for {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				case <-tk.C:
				}
				wmu.Lock()
				err := ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(time.Minute))
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
	})

	var lost atomic.Int32
	cl := testDial(t, u, &DialOptions{
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
			u := rawPeer(t, func(ctx context.Context, ws *websocket.Conn) {
				close(stopped)
				<-ctx.Done() // never reads: the client's writes fill the sockets
			})

			const writeTimeout = 300 * time.Millisecond
			lost := make(chan error, 1)
			cl := testDial(t, u, &DialOptions{
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

// The tests below run under testing/synctest, over in-memory pipes: the
// clock is fake, so they can assert the exact schedule of keep-alive. The
// tests above check the same features over real sockets.

// silenceBounds checks that a connection whose peer went silent at 0 was
// dropped at d: no sooner than Interval+Timeout, and before the next
// check after that, one Interval later.
func silenceBounds(t *testing.T, d time.Duration, ka KeepAlive) {
	t.Helper()
	limit := ka.Interval + cmp.Or(ka.Timeout, ka.Interval)
	if d < limit || d >= limit+ka.Interval {
		t.Errorf("dropped %v after the peer went silent, want within [%v, %v): Interval+Timeout, before the next check", d, limit, limit+ka.Interval)
	}
}

// silentKeepAlives are the keep-alive settings the silent-peer tests try:
// the default Timeout (equal to Interval), a shorter and a longer one.
var silentKeepAlives = []KeepAlive{
	{Interval: time.Second},
	{Interval: time.Second, Timeout: 500 * time.Millisecond},
	{Interval: time.Second, Timeout: 1500 * time.Millisecond},
}

// TestServerKeepAliveDropsSilentClient: a server drops a client from which
// nothing arrives, neither frames nor pongs, after Interval+Timeout, at
// its first check past that.
func TestServerKeepAliveDropsSilentClient(t *testing.T) {
	for _, ka := range silentKeepAlives {
		t.Run(fmt.Sprintf("timeout=%v", ka.Timeout), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				lost := make(chan error, 1)
				_, ps := pipeServer(t, nil, &ServerOptions{
					ConnOptions: ConnOptions{
						KeepAlive:    ka,
						OnDisconnect: func(_ *Conn, err error) { sendNoWait(lost, err) },
					},
				})
				start := time.Now()
				rawPipeDial(t, ps) // never reads, never writes
				err := await(t, lost, time.Minute, "disconnect of the silent client")
				if !errors.Is(err, ErrKeepAliveTimeout) {
					t.Errorf("OnDisconnect: %v, want ErrKeepAliveTimeout", err)
				}
				silenceBounds(t, time.Since(start), ka)
			})
		})
	}
}

// TestClientKeepAliveDropsSilentServer: a client drops a server from which
// nothing arrives, neither answers to its _ping_ calls nor pongs, after
// Interval+Timeout, at its first check past that.
func TestClientKeepAliveDropsSilentServer(t *testing.T) {
	for _, ka := range silentKeepAlives {
		t.Run(fmt.Sprintf("timeout=%v", ka.Timeout), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ps := rawPipeServer(t, func(*websocket.Conn) { <-t.Context().Done() }) // never reads, never writes
				lost := make(chan error, 1)
				start := time.Now()
				cl := pipeDial(t, ps, &DialOptions{
					ConnOptions: ConnOptions{
						KeepAlive:    ka,
						OnDisconnect: func(_ *Conn, err error) { sendNoWait(lost, err) },
					},
					DisableReconnect: true,
				})
				err := await(t, lost, time.Minute, "disconnect from the silent server")
				if !errors.Is(err, ErrKeepAliveTimeout) {
					t.Errorf("OnDisconnect: %v, want ErrKeepAliveTimeout", err)
				}
				silenceBounds(t, time.Since(start), ka)
				await(t, cl.Done(), time.Minute, "end of the client")
			})
		})
	}
}

// keepAliveSchedule is what a peer saw of the other side's keep-alive:
// when each ping and each _ping_ call came, since the connection opened.
type keepAliveSchedule struct {
	pings, pingCalls chan time.Duration
}

func newKeepAliveSchedule() *keepAliveSchedule {
	return &keepAliveSchedule{make(chan time.Duration, 64), make(chan time.Duration, 64)}
}

// watch answers ws's pings with pongs and its _ping_ calls, recording both,
// until ws ends. Other frames are read and dropped.
func (s *keepAliveSchedule) watch(ws *websocket.Conn, start time.Time) {
	ws.SetPingHandler(func(data string) error {
		sendNoWait(s.pings, time.Since(start))
		return ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Minute))
	})
	for {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			return
		}
		if reply, ok := seedEchoReply(msg); ok && bytes.Contains(msg, []byte(`"_ping_"`)) {
			sendNoWait(s.pingCalls, time.Since(start))
			if ws.WriteMessage(websocket.TextMessage, reply) != nil {
				return
			}
		}
	}
}

// expectEvery checks that the first n events on ch came at Interval, 2
// Intervals, and so on.
func expectEvery(t *testing.T, ch <-chan time.Duration, n int, interval time.Duration, what string) {
	t.Helper()
	for k := 1; k <= n; k++ {
		got := await(t, ch, time.Minute, what)
		if want := time.Duration(k) * interval; got != want {
			t.Errorf("%s %d came at %v, want %v (every %v)", what, k, got, want, interval)
		}
	}
}

// TestServerKeepAlivePingsEveryInterval: a server pings each client every
// Interval, and a client that answers stays connected.
func TestServerKeepAlivePingsEveryInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 3 * time.Second
		lost := make(chan error, 1)
		_, ps := pipeServer(t, nil, &ServerOptions{
			ConnOptions: ConnOptions{
				KeepAlive:    KeepAlive{Interval: interval},
				OnDisconnect: func(_ *Conn, err error) { sendNoWait(lost, err) },
			},
		})
		start := time.Now()
		ws := rawPipeDial(t, ps)
		seen := newKeepAliveSchedule()
		go seen.watch(ws, start)
		expectEvery(t, seen.pings, 10, interval, "server ping")
		if len(lost) > 0 {
			t.Errorf("the client that answers pings was dropped: %v", <-lost)
		}
	})
}

// TestClientKeepAlivePingsEveryInterval: a client pings its server every
// Interval and calls its _ping_ method as often (as the Python client
// does), and a server that answers keeps the client connected.
func TestClientKeepAlivePingsEveryInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 3 * time.Second
		seen := newKeepAliveSchedule()
		var start time.Time
		ps := rawPipeServer(t, func(ws *websocket.Conn) { seen.watch(ws, start) })
		lost := make(chan error, 1)
		start = time.Now()
		pipeDial(t, ps, &DialOptions{
			ConnOptions: ConnOptions{
				KeepAlive:    KeepAlive{Interval: interval},
				OnDisconnect: func(_ *Conn, err error) { sendNoWait(lost, err) },
			},
		})
		expectEvery(t, seen.pings, 10, interval, "client ping")
		expectEvery(t, seen.pingCalls, 10, interval, "client _ping_ call")
		if len(lost) > 0 {
			t.Errorf("the client was dropped from a server that answers: %v", <-lost)
		}
	})
}

// TestKeepAliveFrozenLinkExactly: over a healthy link, with keep-alive on
// both sides checking at the same instants, a call outlasts many
// keep-alive periods; once the link freezes, the client drops it after
// Interval+Timeout, at its first check past that, and reconnects at once.
func TestKeepAliveFrozenLinkExactly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ka := KeepAlive{Interval: time.Second, Timeout: 2 * time.Second}
		const hold = 10 * time.Second
		m := utilMux()
		Register(m, "hold", func(context.Context, struct{}) (string, error) {
			time.Sleep(hold) // no frame but keep-alive meanwhile
			return "held", nil
		})
		_, ps := pipeServer(t, m, &ServerOptions{ConnOptions: ConnOptions{KeepAlive: ka}})
		net := newFlakyNet(ps)
		connected := make(chan time.Time, 4)
		lost := make(chan error, 4)
		cl := pipeDial(t, ps, &DialOptions{
			ConnOptions: ConnOptions{
				KeepAlive:    ka,
				OnConnect:    func(context.Context, *Conn) error { sendNoWait(connected, time.Now()); return nil },
				OnDisconnect: func(_ *Conn, err error) { sendNoWait(lost, err) },
			},
			NetDialContext: net.DialContext,
		})
		<-connected
		if _, err := Call[string](t.Context(), cl, "hold", nil); err != nil {
			t.Fatalf("a call outlasting %v of keep-alive checks on a healthy link: %v", hold, err)
		}
		// Let the keep-alive traffic of this instant settle: the client
		// last heard from the server now.
		synctest.Wait()
		link := net.lastLink()
		link.Freeze()
		frozen := time.Now()
		err := await(t, lost, time.Minute, "disconnect of the frozen link")
		if !errors.Is(err, ErrKeepAliveTimeout) {
			t.Errorf("OnDisconnect: %v, want ErrKeepAliveTimeout", err)
		}
		silenceBounds(t, time.Since(frozen), ka)
		dropped := time.Now()
		if at := await(t, connected, time.Minute, "reconnect"); at != dropped {
			t.Errorf("reconnected %v after the drop, want at once", at.Sub(dropped))
		}
		synctest.Wait() // the hooks returned: the connection is the client's
		mustEcho(t.Context(), t, cl, "after the reconnect")
		link.Thaw() // the server learns that the old link is gone
	})
}

// TestClientSurvivesServerPingsAnyPhase is TestClientSurvivesServerPings
// on the fake clock, for many phases of the client to the server's ping
// timer, exact to the nanosecond: a client at its default options, calling
// every 150 ms, stays connected through several pings.
func TestClientSurvivesServerPingsAnyPhase(t *testing.T) {
	for _, phase := range []time.Duration{0, time.Nanosecond, 300 * time.Millisecond, time.Second, 2*time.Second - time.Nanosecond} {
		t.Run(fmt.Sprintf("phase=%v", phase), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				_, ps := pipeServer(t, utilMux(), &ServerOptions{ConnOptions: ConnOptions{KeepAlive: KeepAlive{Interval: 2 * time.Second}}})
				pipeDial(t, ps, &DialOptions{ConnOptions: ConnOptions{KeepAlive: KeepAlive{Interval: -1}}}) // starts the server's ping timer
				time.Sleep(phase)
				lost := make(chan error, 1)
				cl := pipeDial(t, ps, &DialOptions{ConnOptions: ConnOptions{OnDisconnect: func(_ *Conn, err error) { sendNoWait(lost, err) }}})
				conn := cl.Conn()
				_, errs := callSteadily(t.Context(), cl, 150*time.Millisecond, 7*time.Second)
				for _, err := range errs {
					t.Errorf("call failed: %v", err)
				}
				if len(lost) > 0 || cl.Conn() != conn {
					t.Errorf("the client lost its connection: %v", <-lost)
				}
			})
		})
	}
}

// expectEverySocket is expectEvery on the real clock, without its upper
// bounds: the k-th of the first n events on ch comes no earlier than k
// Intervals (timers do not fire early; a loaded machine only delays them);
// it waits at most a minute for each, a bound against a hang. How late an
// event may come is a timing matter, which the tests on the fake clock
// check exactly.
func expectEverySocket(t *testing.T, ch <-chan time.Duration, n int, interval time.Duration, what string) {
	t.Helper()
	for k := 1; k <= n; k++ {
		var got time.Duration
		select {
		case got = <-ch:
		case <-time.After(time.Minute):
			t.Fatalf("no %s %d within a minute", what, k)
		}
		if want := time.Duration(k) * interval; got < want {
			t.Errorf("%s %d came at %v, before %v (every %v)", what, k, got, want, interval)
		}
	}
}

// TestServerKeepAlivePingsSocket: TestServerKeepAlivePingsEveryInterval
// over a real socket, on the real clock.
func TestServerKeepAlivePingsSocket(t *testing.T) {
	t.Parallel()
	const interval = 100 * time.Millisecond
	lost := make(chan error, 1)
	_, u := testServer(t, nil, &ServerOptions{
		ConnOptions: ConnOptions{
			// A peer silent for a minute is dead, not one whose pong a
			// loaded machine delayed past an Interval: the test is of the
			// pings, not of dropping.
			KeepAlive:    KeepAlive{Interval: interval, Timeout: time.Minute},
			OnDisconnect: func(_ *Conn, err error) { sendNoWait(lost, err) },
		},
	})
	start := time.Now()
	ws, _, err := (&websocket.Dialer{}).DialContext(ctxT(t), u, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	t.Cleanup(func() { ws.Close() })
	seen := newKeepAliveSchedule()
	go seen.watch(ws, start)
	expectEverySocket(t, seen.pings, 5, interval, "server ping")
	if len(lost) > 0 {
		t.Errorf("the client that answers pings was dropped: %v", <-lost)
	}
}

// TestClientKeepAlivePingsSocket: TestClientKeepAlivePingsEveryInterval
// over a real socket, on the real clock.
func TestClientKeepAlivePingsSocket(t *testing.T) {
	t.Parallel()
	const interval = 100 * time.Millisecond
	seen := newKeepAliveSchedule()
	start := time.Now() // before the connection, and set before its handler runs
	u := rawPeer(t, func(_ context.Context, ws *websocket.Conn) { seen.watch(ws, start) })
	lost := make(chan error, 1)
	testDial(t, u, &DialOptions{
		ConnOptions: ConnOptions{
			KeepAlive:    KeepAlive{Interval: interval, Timeout: time.Minute}, // as in TestServerKeepAlivePingsSocket
			OnDisconnect: func(_ *Conn, err error) { sendNoWait(lost, err) },
		},
	})
	expectEverySocket(t, seen.pings, 5, interval, "client ping")
	expectEverySocket(t, seen.pingCalls, 5, interval, "client _ping_ call")
	if len(lost) > 0 {
		t.Errorf("the client was dropped from a server that answers: %v", <-lost)
	}
}
