package pubsub

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsrpc/wsrpc"
)

// quiet is a logger for tests: set WSRPC_TEST_LOG=1 to see the logs.
func quiet() *slog.Logger {
	if testing.Verbose() && os.Getenv("WSRPC_TEST_LOG") == "1" {
		return slog.Default()
	}
	return slog.New(slog.DiscardHandler)
}

// ctxT returns a context that ends with the test or after 30 s.
func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// node is a pub/sub server on a loopback httptest server, mounted where
// `wsrpc serve` mounts it: /ws, /ws/{client_id}, /pubsub and
// /pubsub/{client_id}.
type node struct {
	ps   *Server
	srv  *wsrpc.Server
	hs   *httptest.Server
	url  string // ws:// URL of /pubsub
	once sync.Once
}

// newNode starts a node; everything is closed when the test ends.
func newNode(t testing.TB, opts *Options, sopts *wsrpc.ServerOptions) *node {
	t.Helper()
	if opts == nil {
		opts = &Options{}
	}
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	if sopts == nil {
		sopts = &wsrpc.ServerOptions{}
	}
	if sopts.Logger == nil {
		sopts.Logger = quiet()
	}
	n := &node{ps: NewServer(opts)}
	mux := wsrpc.NewMux()
	var err error
	if n.srv, err = wsrpc.NewServer(mux, sopts); err != nil {
		t.Fatal(err)
	}
	n.ps.Register(n.srv, mux)
	hm := http.NewServeMux()
	for _, p := range []string{"/ws", "/ws/{client_id}", "/pubsub", "/pubsub/{client_id}"} {
		hm.Handle(p, n.srv)
	}
	n.hs = httptest.NewServer(hm)
	n.url = "ws" + strings.TrimPrefix(n.hs.URL, "http") + "/pubsub"
	t.Cleanup(n.close)
	return n
}

// close closes the node, once.
func (n *node) close() {
	n.once.Do(func() {
		n.srv.Close()
		n.ps.Close()
		n.hs.Close()
	})
}

// dial dials a Client to url (a quiet logger unless set), closed when the
// test ends.
func dial(t testing.TB, url string, opts *ClientOptions) *Client {
	t.Helper()
	if opts == nil {
		opts = &ClientOptions{}
	}
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // against a hang
	defer cancel()
	cl, err := Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("Dial(%s): %v", url, err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// rawConn is a WebSocket client that speaks frames, as a Python peer
// would: a reader goroutine hands each frame to frames, unless the
// connection was opened with stalled set (it never reads).
type rawConn struct {
	t      testing.TB
	ws     *websocket.Conn
	frames chan []byte
	done   chan struct{} // closed when the reader has ended
	err    atomic.Pointer[error]
	id     atomic.Int64
	wmu    sync.Mutex
}

// dialRaw opens a rawConn to url, closed when the test ends.
func dialRaw(t testing.TB, url string, stalled bool) *rawConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // against a hang
	defer cancel()
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	r := &rawConn{t: t, ws: ws, frames: make(chan []byte, 4096), done: make(chan struct{})}
	if stalled {
		close(r.done)
	} else {
		go r.read()
	}
	t.Cleanup(func() {
		r.ws.Close()
		<-r.done
	})
	return r
}

func (r *rawConn) read() {
	defer close(r.done)
	for {
		_, msg, err := r.ws.ReadMessage()
		if err != nil {
			r.err.Store(&err)
			close(r.frames)
			return
		}
		r.frames <- msg
	}
}

// readErr returns why the reader ended, once it has.
func (r *rawConn) readErr() error {
	if p := r.err.Load(); p != nil {
		return *p
	}
	return nil
}

// send writes one text frame.
func (r *rawConn) send(frame string) {
	r.t.Helper()
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if err := r.ws.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// request sends a call and returns its call id.
func (r *rawConn) request(method string, args any) string {
	r.t.Helper()
	id := fmt.Sprintf("raw%d", r.id.Add(1))
	b, err := json.Marshal(map[string]any{"request": map[string]any{"method": method, "arguments": args, "call_id": id}, "response": nil})
	if err != nil {
		r.t.Fatal(err)
	}
	r.send(string(b))
	return id
}

// frame is a decoded envelope.
type frame struct {
	Request *struct {
		Method    string          `json:"method"`
		Arguments json.RawMessage `json:"arguments"`
		CallID    string          `json:"call_id"`
	} `json:"request"`
	Response *struct {
		Result     json.RawMessage `json:"result"`
		ResultType string          `json:"result_type"`
		CallID     *string         `json:"call_id"`
		Error      *wsrpc.Error    `json:"error"`
	} `json:"response"`
}

// next returns the next frame, failing the test if none comes before ctx
// ends.
func (r *rawConn) next(ctx context.Context) frame {
	r.t.Helper()
	select {
	case b, ok := <-r.frames:
		if !ok {
			r.t.Fatalf("connection ended: %v", r.readErr())
		}
		var f frame
		if err := json.Unmarshal(b, &f); err != nil {
			r.t.Fatalf("bad frame %s: %v", b, err)
		}
		return f
	case <-ctx.Done():
		r.t.Fatalf("no frame: %v", ctx.Err())
		panic("unreachable")
	}
}

// call makes a call and returns its answer; notifies arriving meanwhile
// are answered and handed to notified, if not nil.
func (r *rawConn) call(ctx context.Context, method string, args any) frame {
	r.t.Helper()
	id := r.request(method, args)
	for {
		f := r.next(ctx)
		if f.Response != nil && f.Response.CallID != nil && *f.Response.CallID == id {
			return f
		}
		if f.Request != nil && f.Request.Method == "notify" {
			r.answer(f.Request.CallID)
			continue
		}
		r.t.Fatalf("unexpected frame while waiting for %s's answer: %+v", method, f)
	}
}

// answer answers a notify as PubSubClient does.
func (r *rawConn) answer(callID string) {
	r.send(`{"request": null, "response": {"result": "None", "result_type": "str", "call_id": "` + callID + `"}}`)
}

// notification is a notify's arguments.
type notification struct {
	Subscription struct {
		ID           string  `json:"id"`
		SubscriberID string  `json:"subscriber_id"`
		Topic        string  `json:"topic"`
		NotifierID   *string `json:"notifier_id"`
	} `json:"subscription"`
	Data json.RawMessage `json:"data"`
}

// nextNotify returns the next frame, which must be a notify, without
// answering it; it returns its call id too.
func (r *rawConn) nextNotify(ctx context.Context) (notification, string) {
	r.t.Helper()
	f := r.next(ctx)
	if f.Request == nil || f.Request.Method != "notify" {
		r.t.Fatalf("got %+v, want a notify", f)
	}
	var n notification
	if err := json.Unmarshal(f.Request.Arguments, &n); err != nil {
		r.t.Fatal(err)
	}
	return n, f.Request.CallID
}

// mustTrue checks that an answer is true.
func mustTrue(t testing.TB, f frame, what string) {
	t.Helper()
	if f.Response == nil || f.Response.Error != nil || string(f.Response.Result) != "true" || f.Response.ResultType != "bool" {
		t.Fatalf("%s: answer %+v, want true", what, f.Response)
	}
}

// pollUntil polls cond until it holds, failing the test after a minute (a
// bound against a hang, not a timing assertion). Use
// it only for states no hook or channel reports.
func pollUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// recv waits for a value on ch, failing the test if ctx ends first.
func recv[T any](ctx context.Context, t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatalf("waiting for %s: %v", what, ctx.Err())
		panic("unreachable")
	}
}

// collector is a Handler that hands each event to a channel.
type collector struct{ ch chan Event }

func newCollector() *collector { return &collector{ch: make(chan Event, 10000)} }

func (c *collector) handle(_ context.Context, ev Event) error {
	c.ch <- ev
	return nil
}

// dropConn closes the server's only connection and waits until it has
// ended, so that the client reconnects.
func (n *node) dropConn(t *testing.T) {
	t.Helper()
	var c *wsrpc.Conn
	pollUntil(t, "one connection on the server", func() bool {
		cs := n.srv.Conns()
		if len(cs) == 1 {
			c = cs[0]
		}
		return len(cs) == 1
	})
	c.Close()
	recv(ctxT(t), t, c.Done(), "the dropped connection's end")
}

// subscribed waits until the node's index holds n subscriptions to topic.
func (n *node) subscribed(t testing.TB, topic string, want int) {
	t.Helper()
	pollUntil(t, fmt.Sprintf("%d subscriptions to %q", want, topic), func() bool { return n.ps.Topics()[topic] == want })
}
