package wsrpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsrpc/wsrpc/internal/wire"
)

// rawPeer runs a server that speaks the wire protocol by hand, outside
// wsrpc, so that a test sees the frames in the order they arrive: serve
// gets each connection's WebSocket, and a context that ends when the test
// does. It returns the ws:// URL. serve has returned when the test ends.
func rawPeer(t *testing.T, serve func(ctx context.Context, ws *websocket.Conn)) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		wg.Add(1)
		defer wg.Done()
		defer ws.Close()
		stop := context.AfterFunc(ctx, func() { ws.NetConn().Close() })
		defer stop()
		serve(ctx, ws)
	}))
	t.Cleanup(func() {
		cancel()
		hs.Close()
		wg.Wait()
	})
	return "ws" + strings.TrimPrefix(hs.URL, "http")
}

// rawRequest is a request a rawPeer read.
type rawRequest struct {
	id  []byte // the call id token
	seq int    // its argument "seq"
}

// readRequest reads frames until a request comes.
func readRequest(ws *websocket.Conn) (rawRequest, error) {
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			return rawRequest{}, err
		}
		var f wire.Frame
		if err := wire.Decode(data, &f); err != nil {
			return rawRequest{}, err
		}
		if f.Kind != wire.KindRequest {
			continue
		}
		var args struct {
			Seq int `json:"seq"`
		}
		if len(f.Args) > 0 {
			if err := json.Unmarshal(f.Args, &args); err != nil {
				return rawRequest{}, err
			}
		}
		return rawRequest{id: f.CallID, seq: args.Seq}, nil // f aliases data, which is the frame's own
	}
}

// answer sends the response to r with result, raw JSON.
func (r rawRequest) answer(ws *websocket.Conn, result string) error {
	out := wire.AppendResponseEnd(append(wire.AppendResponseStart(nil), result...), "int", r.id)
	return ws.WriteMessage(websocket.TextMessage, out)
}

// drainRaw reads frames until the connection ends.
func drainRaw(ws *websocket.Conn) {
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			return
		}
	}
}

// rawDialOptions are the options of a client of a rawPeer: no keep-alive
// calls, and no reconnect.
func rawDialOptions() *DialOptions {
	return &DialOptions{DisableReconnect: true, ConnOptions: ConnOptions{KeepAlive: KeepAlive{Interval: -1}}}
}

// TestGoManyInFlight: 10,000 calls made with Go from one goroutine are all
// in flight at once on one connection without a goroutine each, and each
// completes exactly once, with its own answer.
func TestGoManyInFlight(t *testing.T) {
	const n = 10000
	read := make(chan []rawRequest, 1)
	answer := make(chan struct{})
	url := rawPeer(t, func(ctx context.Context, ws *websocket.Conn) {
		reqs := make([]rawRequest, 0, n)
		for len(reqs) < n {
			r, err := readRequest(ws)
			if err != nil {
				t.Errorf("peer: %d requests read: %v", len(reqs), err)
				return
			}
			reqs = append(reqs, r)
		}
		read <- reqs
		select {
		case <-answer:
		case <-ctx.Done():
			return
		}
		for i := len(reqs) - 1; i >= 0; i-- { // last first: answers are matched by id
			if err := reqs[i].answer(ws, fmt.Sprint(reqs[i].seq)); err != nil {
				t.Errorf("peer: %v", err)
				return
			}
		}
		drainRaw(ws)
	})
	cl := testDial(t, url, rawDialOptions())
	c := cl.Conn()
	ctx := ctxT(t)

	counts := make([]atomic.Int32, n)
	var completed atomic.Int32
	all := make(chan struct{})
	errs := make(chan error, n)
	before := runtime.NumGoroutine()
	for i := range n {
		err := c.Go(ctx, "notify", map[string]int{"seq": i}, func(r *Reply) {
			var seq int
			if err := r.Decode(&seq); err != nil {
				errs <- err
			} else if seq != i {
				errs <- fmt.Errorf("call %d got the answer of call %d", i, seq)
			}
			counts[i].Add(1)
			if completed.Add(1) == n {
				close(all)
			}
		})
		if err != nil {
			t.Fatalf("Go %d: %v", i, err)
		}
	}
	select {
	case <-read:
	case <-ctx.Done():
		t.Fatal("the peer did not get all the requests")
	}
	// Every call is in flight: the peer has its request, we have no answer.
	if extra := runtime.NumGoroutine() - before; extra > n/100 {
		t.Errorf("%d calls in flight run %d more goroutines; want far fewer than one per call", n, extra)
	}
	if got := completed.Load(); got != 0 {
		t.Fatalf("%d calls completed before any answer was sent", got)
	}
	close(answer)
	select {
	case <-all:
	case <-ctx.Done():
		t.Fatalf("%d of %d calls completed", completed.Load(), n)
	}
	cl.Close() // nothing is left for failAll to complete a second time
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range counts {
		if k := counts[i].Load(); k != 1 {
			t.Errorf("call %d completed %d times", i, k)
		}
	}
}

// TestGoOrder: the calls one goroutine makes with Go, and with Call between
// them, reach the peer in the order it made them, also while a small send
// queue makes Go wait for room.
func TestGoOrder(t *testing.T) {
	const n = 2000
	arrived := make(chan []int, 1)
	url := rawPeer(t, func(ctx context.Context, ws *websocket.Conn) {
		var order []int
		for len(order) < n {
			r, err := readRequest(ws)
			if err != nil {
				t.Errorf("peer: %d requests read: %v", len(order), err)
				return
			}
			order = append(order, r.seq)
			if err := r.answer(ws, "null"); err != nil {
				t.Errorf("peer: %v", err)
				return
			}
		}
		arrived <- order
		drainRaw(ws)
	})
	opts := rawDialOptions()
	opts.SendQueue = 2
	cl := testDial(t, url, opts)
	c := cl.Conn()
	ctx := ctxT(t)
	var completed sync.WaitGroup
	for i := range n {
		args := map[string]int{"seq": i}
		if i%100 == 99 {
			if err := c.Call(ctx, "push", args, nil); err != nil {
				t.Fatalf("Call %d: %v", i, err)
			}
			continue
		}
		completed.Add(1)
		err := c.Go(ctx, "push", args, func(r *Reply) {
			defer completed.Done()
			if err := r.Err(); err != nil {
				t.Errorf("call %d: %v", i, err)
			}
		})
		if err != nil {
			t.Fatalf("Go %d: %v", i, err)
		}
	}
	var order []int
	select {
	case order = <-arrived:
	case <-ctx.Done():
		t.Fatal("the peer did not get all the requests")
	}
	for i, seq := range order {
		if seq != i {
			t.Fatalf("request %d to arrive was call %d", i, seq)
		}
	}
	completed.Wait()
}

// recvErr receives a done function's error.
func recvErr(t *testing.T, errs <-chan error) error {
	t.Helper()
	select {
	case err := <-errs:
		return err
	case <-ctxT(t).Done():
		t.Fatal("done was not called")
		return nil
	}
}

// TestGoTimeout: a call made with Go that gets no answer completes with
// context.DeadlineExceeded when its context's deadline passes, or, with no
// deadline, the connection's CallTimeout; exactly once.
func TestGoTimeout(t *testing.T) {
	for _, tc := range []struct {
		name        string
		callTimeout time.Duration
		ctxTimeout  time.Duration
	}{
		{"ctx deadline", 0, 20 * time.Millisecond},
		{"CallTimeout", 20 * time.Millisecond, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := rawPeer(t, func(_ context.Context, ws *websocket.Conn) { drainRaw(ws) })
			opts := rawDialOptions()
			opts.CallTimeout = tc.callTimeout
			cl := testDial(t, url, opts)
			ctx := context.Background()
			if tc.ctxTimeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.ctxTimeout)
				defer cancel()
			}
			var calls atomic.Int32
			errs := make(chan error, 2)
			err := cl.Go(ctx, "never", nil, func(r *Reply) {
				calls.Add(1)
				errs <- r.Err()
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := recvErr(t, errs); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("done got %v; want context.DeadlineExceeded", err)
			}
			cl.Close() // failAll finds the call gone
			if n := calls.Load(); n != 1 {
				t.Errorf("done was called %d times", n)
			}
		})
	}
}

// TestGoConnectionLost: when the link drops, every call in flight made
// with Go completes with ErrConnectionLost.
func TestGoConnectionLost(t *testing.T) {
	const n = 100
	url := rawPeer(t, func(_ context.Context, ws *websocket.Conn) {
		for range n {
			if _, err := readRequest(ws); err != nil {
				t.Errorf("peer: %v", err)
				return
			}
		}
		ws.NetConn().Close() // no close frame: the link is lost
	})
	cl := testDial(t, url, rawDialOptions())
	ctx := ctxT(t)
	errs := make(chan error, n)
	for i := range n {
		if err := cl.Go(ctx, "hang", map[string]int{"seq": i}, func(r *Reply) { errs <- r.Err() }); err != nil {
			t.Fatalf("Go %d: %v", i, err)
		}
	}
	for range n {
		if err := recvErr(t, errs); !errors.Is(err, ErrConnectionLost) {
			t.Errorf("done got %v; want ErrConnectionLost", err)
		}
	}
}

// TestGoCancel: a call made with Go whose context is canceled completes
// with context.Canceled, and over the extension the peer's handler sees
// its context canceled by the caller.
func TestGoCancel(t *testing.T) {
	started := make(chan struct{}, 1)
	byCaller := make(chan bool, 1)
	m := echoMux()
	Register(m, "wait", func(ctx context.Context, _ struct{}) (int, error) {
		started <- struct{}{}
		<-ctx.Done()
		cc, ok := ctx.(*callCtx)
		byCaller <- ok && cc.endedBy(errCanceledByPeer)
		return 0, ctx.Err()
	})
	_, url := testServer(t, m, nil)
	cl := testDial(t, url, &DialOptions{ConnOptions: ConnOptions{KeepAlive: KeepAlive{Interval: -1}}})
	if c := cl.Conn(); !c.ext {
		t.Fatal("the extension was not negotiated")
	}
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	errs := make(chan error, 1)
	if err := cl.Go(ctx, "wait", nil, func(r *Reply) { errs <- r.Err() }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-ctxT(t).Done():
		t.Fatal("the handler did not start")
	}
	cancel()
	if err := recvErr(t, errs); !errors.Is(err, context.Canceled) {
		t.Errorf("done got %v; want context.Canceled", err)
	}
	select {
	case ok := <-byCaller:
		if !ok {
			t.Error("the handler's context ended, but not by the caller's cancel frame")
		}
	case <-ctxT(t).Done():
		t.Fatal("the handler's context was not canceled")
	}
}

// TestClientGo: Client.Go makes the call on the current connection, and
// done can decode results and remote errors while it runs, and no longer
// once it has returned; without a connection Client.Go fails at once with
// ErrNotConnected, and after Close with ErrClosed, never calling done.
func TestClientGo(t *testing.T) {
	srv, url := testServer(t, echoMux(), nil)
	cl := testDial(t, url, &DialOptions{DisableReconnect: true, ConnOptions: ConnOptions{KeepAlive: KeepAlive{Interval: -1}}})
	ctx := ctxT(t)

	type outcome struct {
		text string
		err  error
		r    *Reply
	}
	got := make(chan outcome, 1)
	done := func(r *Reply) {
		var o outcome
		o.err = r.Decode(&o.text)
		o.r = r
		got <- o
	}
	recv := func() outcome {
		t.Helper()
		select {
		case o := <-got:
			return o
		case <-ctx.Done():
			t.Fatal("done was not called")
			return outcome{}
		}
	}
	if err := cl.Go(ctx, "echo", textArgs{"hello"}, done); err != nil {
		t.Fatal(err)
	}
	o := recv()
	if o.err != nil || o.text != "hello" {
		t.Errorf("echo: %q, %v; want hello", o.text, o.err)
	}
	echo := o.r

	if err := cl.Go(ctx, "no_such_method", nil, done); err != nil {
		t.Fatal(err)
	}
	o = recv()
	if e, ok := errors.AsType[*Error](o.err); !ok || e.Code != CodeMethodNotFound || !errors.Is(o.r.Err(), o.err) {
		t.Errorf("unknown method: %v; want a remote error with CodeMethodNotFound", o.err)
	}
	// The reader ran the first done to its end before the second.
	if err := echo.Decode(new(string)); !errors.Is(err, errReplyUsed) {
		t.Errorf("Decode after done returned: %v; want an error", err)
	}
	if err := echo.Err(); err != nil {
		t.Errorf("Err after done returned: %v; want nil", err)
	}

	notCalled := func(*Reply) { t.Error("done was called for a call that was not made") }
	serverConn(t, srv).Close()
	<-cl.Done()
	if err := cl.Go(ctx, "echo", textArgs{"x"}, notCalled); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Go without a connection: %v; want ErrNotConnected", err)
	}
	cl.Close()
	if err := cl.Go(ctx, "echo", textArgs{"x"}, notCalled); !errors.Is(err, ErrClosed) {
		t.Errorf("Go after Close: %v; want ErrClosed", err)
	}
}

// TestGoNotMade: Conn.Go returns an error, and never calls done, for a call
// it cannot make: an empty method name, arguments that are no JSON object,
// a context that has ended, a closed connection.
func TestGoNotMade(t *testing.T) {
	_, url := testServer(t, echoMux(), nil)
	cl := testDial(t, url, &DialOptions{DisableReconnect: true, ConnOptions: ConnOptions{KeepAlive: KeepAlive{Interval: -1}}})
	c := cl.Conn()
	var called atomic.Int32
	done := func(*Reply) { called.Add(1) }
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	ctx := ctxT(t)
	if err := c.Go(ctx, "", nil, done); err == nil {
		t.Error("empty method name: no error")
	}
	if err := c.Go(ctx, "echo", []int{1}, done); err == nil {
		t.Error("arguments that are a JSON array: no error")
	}
	if err := c.Go(canceled, "echo", textArgs{"x"}, done); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled context: %v; want context.Canceled", err)
	}
	c.Close()
	if err := c.Go(ctx, "echo", textArgs{"x"}, done); !errors.Is(err, ErrClosed) {
		t.Errorf("closed connection: %v; want ErrClosed", err)
	}
	<-c.Done()
	if n := called.Load(); n != 0 {
		t.Errorf("done was called %d times", n)
	}
}

// TestGoCloseFromDone: done may close the connection, both when the reader
// runs it with an answer and when the connection's end fails the call.
func TestGoCloseFromDone(t *testing.T) {
	var reqs []rawRequest
	url := rawPeer(t, func(_ context.Context, ws *websocket.Conn) {
		for range 2 {
			r, err := readRequest(ws)
			if err != nil {
				t.Errorf("peer: %v", err)
				return
			}
			reqs = append(reqs, r)
		}
		reqs[0].answer(ws, "1") // the second call stays in flight
		drainRaw(ws)
	})
	cl := testDial(t, url, rawDialOptions())
	c := cl.Conn()
	ctx := ctxT(t)
	errs := make(chan error, 2)
	done := func(r *Reply) {
		c.Close()
		errs <- r.Err()
	}
	for i := range 2 {
		if err := c.Go(ctx, "bye", map[string]int{"seq": i}, done); err != nil {
			t.Fatal(err)
		}
	}
	if err := recvErr(t, errs); err != nil {
		t.Errorf("answered call: %v", err)
	}
	if err := recvErr(t, errs); !errors.Is(err, ErrClosed) {
		t.Errorf("call in flight: %v; want ErrClosed", err)
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("the connection did not end")
	}
}

// TestGoObserved: the Observer sees each call made with Go start and end
// once, as it sees Call's: with the context CallStarted returned, the
// outcome, and the remote error's code; a call Go refuses ends at once.
func TestGoObserved(t *testing.T) {
	_, url := testServer(t, echoMux(), nil)
	rec := newRecorder()
	cl := testDial(t, url, &DialOptions{ConnOptions: ConnOptions{Observer: rec, KeepAlive: KeepAlive{Interval: -1}}})
	ctx := ctxT(t)
	errs := make(chan error, 2)
	done := func(r *Reply) { errs <- r.Err() }
	for _, m := range []string{"echo", "no_such_method"} {
		if err := cl.Go(ctx, m, textArgs{"x"}, done); err != nil {
			t.Fatal(err)
		}
		recvErr(t, errs)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := cl.Go(canceled, "refused", nil, done); err == nil {
		t.Fatal("Go with a canceled context: no error")
	}

	ended := rec.endedCalls(Outbound)
	if ci := ended["echo"]; ci.Err != nil || ci.ResponseBytes == 0 || ci.RequestBytes == 0 {
		t.Errorf("echo: %+v; want a success with its sizes", ci)
	}
	if ci := ended["no_such_method"]; ci.Code != CodeMethodNotFound || ci.Err == nil {
		t.Errorf("no_such_method: %+v; want CodeMethodNotFound", ci)
	}
	if ci := ended["refused"]; !errors.Is(ci.Err, context.Canceled) {
		t.Errorf("refused: %+v; want context.Canceled", ci)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.started) != 3 || len(rec.ended) != 3 {
		t.Errorf("%d calls started and %d ended; want 3 each", len(rec.started), len(rec.ended))
	}
	for i, v := range rec.ctxValue {
		if want := "span of " + rec.ended[i].Method; v != want {
			t.Errorf("CallEnded of %s got a context carrying %v; want %q", rec.ended[i].Method, v, want)
		}
	}
}

// TestGoSweep: the connection's sweep applies CallTimeout to each call
// made with Go from its own start (calls made at different times expire
// at different times, none early), to a context that may be canceled too
// (canceling it still ends the call at once), and not to answered calls.
// It runs under testing/synctest over an in-memory pipe, so that its
// bounds on when each call ends hold on the fake clock whatever the load.
func TestGoSweep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout = 200 * time.Millisecond
		ps := rawPipeServer(t, drainRaw)
		opts := rawDialOptions()
		opts.CallTimeout = timeout
		cl := pipeDial(t, ps, opts)
		type outcome struct {
			err error
			at  time.Time
		}
		start := func(ctx context.Context) (time.Time, chan outcome) {
			ch := make(chan outcome, 2)
			at := time.Now()
			if err := cl.Go(ctx, "never", nil, func(r *Reply) { ch <- outcome{r.Err(), time.Now()} }); err != nil {
				t.Fatal(err)
			}
			return at, ch
		}
		t0, ch0 := start(context.Background())
		time.Sleep(timeout / 2)
		cctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		t1, ch1 := start(cctx)
		t2, ch2 := start(cctx)
		cancel()
		for i, c := range []struct {
			at       time.Time
			ch       chan outcome
			want     error
			min, max time.Duration
		}{
			{t2, ch2, context.Canceled, 0, 0},
			{t1, ch1, context.Canceled, 0, 0},
			{t0, ch0, context.DeadlineExceeded, timeout, timeout + timeout/16},
		} {
			o := await(t, c.ch, time.Minute, fmt.Sprintf("end of call %d", i))
			if !errors.Is(o.err, c.want) {
				t.Errorf("call %d: %v; want %v", i, o.err, c.want)
			}
			if d := o.at.Sub(c.at); d < c.min || d > c.max {
				t.Errorf("call %d ended after %v; want %v to %v", i, d, c.min, c.max)
			}
		}
		// The sweep stopped with nothing left; a later call starts it again.
		t3, ch3 := start(context.Background())
		o := await(t, ch3, time.Minute, "end of the later call")
		if d := o.at.Sub(t3); !errors.Is(o.err, context.DeadlineExceeded) || d < timeout || d > timeout+timeout/16 {
			t.Errorf("later call: %v after %v", o.err, d)
		}
	})
}
