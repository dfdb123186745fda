package wsrpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A web server's page, as a wrong URL gets it.
const htmlPage = "<!DOCTYPE html>\n<html>\n<head><title>Welcome</title></head>\n<body><h1>It works!</h1></body>\n</html>\n"

// logRecorder keeps the records of a logger at Info level, as JSON lines.
type logRecorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// infoLogger returns a logger at Info level and what records it.
func infoLogger() (*slog.Logger, *logRecorder) {
	lr := &logRecorder{}
	h := slog.NewJSONHandler(lockedWriter{&lr.mu, &lr.buf}, &slog.HandlerOptions{Level: slog.LevelInfo})
	return slog.New(h), lr
}

// records returns the records logged so far.
func (lr *logRecorder) records(t *testing.T) []map[string]any {
	t.Helper()
	lr.mu.Lock()
	defer lr.mu.Unlock()
	var out []map[string]any
	dec := json.NewDecoder(bytes.NewReader(lr.buf.Bytes()))
	for {
		var rec map[string]any
		if err := dec.Decode(&rec); err == io.EOF {
			return out
		} else if err != nil {
			t.Fatalf("decoding the log: %v", err)
		}
		out = append(out, rec)
	}
}

// brief names records by level and message.
func brief(recs []map[string]any) []string {
	out := make([]string, len(recs))
	for i, rec := range recs {
		out[i] = fmt.Sprintf("%v %q", rec["level"], rec["msg"])
	}
	return out
}

// wantNoRecords fails the test if anything was logged at Info or above.
func (lr *logRecorder) wantNoRecords(t *testing.T, what string) {
	t.Helper()
	for _, rec := range lr.records(t) {
		delete(rec, "stack")
		t.Errorf("%s logged at %v: %q %v", what, rec["level"], rec["msg"], rec)
	}
}

// countingServer serves h on a loopback httptest server and counts its
// requests; second is closed when the second request arrives.
func countingServer(t *testing.T, h http.HandlerFunc) (hs *httptest.Server, requests *atomic.Int32, second <-chan struct{}) {
	t.Helper()
	requests = new(atomic.Int32)
	again := make(chan struct{})
	hs = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) == 2 {
			close(again)
		}
		h(w, r)
	}))
	hs.Config.ErrorLog = log.New(io.Discard, "", 0)
	hs.Start()
	t.Cleanup(hs.Close)
	return hs, requests, again
}

// dialNoDeadline dials under a context without a deadline, as
// context.Background() is, and fails the test if the server sees a second
// try (then it cancels the dial, which would retry without end).
func dialNoDeadline(t *testing.T, rawURL string, second <-chan struct{}, opts *DialOptions) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		cl, err := Dial(ctx, rawURL, opts)
		if cl != nil {
			cl.Close()
			err = errors.New("Dial succeeded")
		}
		errc <- err
	}()
	select {
	case err := <-errc:
		return err
	case <-second:
		t.Errorf("Dial(%s) tried again: the answer is final", rawURL)
		cancel()
		return <-errc
	}
}

// wantOneLine fails the test if err's text spans lines or shows HTML.
func wantOneLine(t *testing.T, err error) {
	t.Helper()
	if s := err.Error(); strings.ContainsAny(s, "\r\n") || strings.Contains(s, "<") || strings.Contains(strings.ToLower(s), "html") {
		t.Errorf("error text is not one line of text: %q", s)
	}
}

// TestDialWrongURLIsFinal: an answer that says the URL names no WebSocket
// endpoint ends Dial after one try, under a context without a deadline
// and the default Retry, with an *HTTPError and one line of text that
// shows no page.
func TestDialWrongURLIsFinal(t *testing.T) {
	longText := strings.Repeat("x", maxBodyMessage+1)
	type test struct {
		name     string
		h        http.HandlerFunc
		status   int
		message  string // HTTPError.Message
		wantText string // the error's text after "wsrpc: connect URL: "
	}
	tests := []test{
		{
			name:     "404 from ServeMux",
			h:        http.NotFound,
			status:   http.StatusNotFound,
			message:  "404 page not found",
			wantText: "HTTP 404 Not Found: 404 page not found",
		},
		{
			name: "404 page",
			h: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				w.WriteHeader(http.StatusNotFound)
				io.WriteString(w, htmlPage)
			},
			status:   http.StatusNotFound,
			wantText: "HTTP 404 Not Found",
		},
		{
			name: "404 HTML sent as plain text",
			h: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.WriteHeader(http.StatusNotFound)
				io.WriteString(w, "<h1>Not Found</h1>")
			},
			status:   http.StatusNotFound,
			wantText: "HTTP 404 Not Found",
		},
		{
			name:     "404 long text",
			h:        func(w http.ResponseWriter, _ *http.Request) { http.Error(w, longText, http.StatusNotFound) },
			status:   http.StatusNotFound,
			wantText: "HTTP 404 Not Found",
		},
		{
			name: "404 lines of text",
			h: func(w http.ResponseWriter, _ *http.Request) {
				http.Error(w, "no such path\nsee the docs", http.StatusNotFound)
			},
			status:   http.StatusNotFound,
			wantText: "HTTP 404 Not Found",
		},
		{
			name: "200 page",
			h: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				io.WriteString(w, htmlPage)
			},
			status:   http.StatusOK,
			wantText: "not a WebSocket endpoint: HTTP 200 OK, expected 101 Switching Protocols",
		},
		{
			name:     "200 text",
			h:        func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello") },
			status:   http.StatusOK,
			wantText: "not a WebSocket endpoint: HTTP 200 OK, expected 101 Switching Protocols",
		},
		{
			name:     "204",
			h:        func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) },
			status:   http.StatusNoContent,
			wantText: "not a WebSocket endpoint: HTTP 204 No Content, expected 101 Switching Protocols",
		},
		{
			name: "301 redirect",
			h: func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "/elsewhere", http.StatusMovedPermanently)
			},
			status:   http.StatusMovedPermanently,
			wantText: "not a WebSocket endpoint: HTTP 301 Moved Permanently, expected 101 Switching Protocols",
		},
	}
	for _, code := range []int{http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusGone, http.StatusUpgradeRequired, http.StatusNotImplemented} {
		tests = append(tests, test{
			name:     fmt.Sprint(code),
			h:        func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "nope", code) },
			status:   code,
			message:  "nope",
			wantText: statusLine(code) + ": nope",
		})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs, requests, second := countingServer(t, tt.h)
			url := wsURLOf(hs, "/x")
			logger, logs := infoLogger()
			err := dialNoDeadline(t, url, second, &DialOptions{ConnOptions: ConnOptions{Logger: logger}})
			he, ok := errors.AsType[*HTTPError](err)
			if !ok {
				t.Fatalf("Dial: err = %v, want an *HTTPError", err)
			}
			if he.StatusCode != tt.status || he.Message != tt.message {
				t.Errorf("Dial: HTTPError{%d, %q}, want {%d, %q}", he.StatusCode, he.Message, tt.status, tt.message)
			}
			if want := "wsrpc: connect " + url + ": " + tt.wantText; err.Error() != want {
				t.Errorf("Dial: error text\n%q, want\n%q", err.Error(), want)
			}
			wantOneLine(t, err)
			if n := requests.Load(); n != 1 {
				t.Errorf("server saw %d requests, want 1", n)
			}
			logs.wantNoRecords(t, "a failed Dial")
		})
	}
}

// TestDialRetriesPassingFailures: answers that may change (408, 429, 5xx
// but 501) are retried up to MaxTries; the tries log nothing at Info, and
// the error names the last answer in one line.
func TestDialRetriesPassingFailures(t *testing.T) {
	for _, code := range []int{
		http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout,
	} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			hs, requests, _ := countingServer(t, func(w http.ResponseWriter, _ *http.Request) {
				http.Error(w, "try later", code)
			})
			url := wsURLOf(hs, "/ws")
			logger, logs := infoLogger()
			_, err := Dial(ctxT(t), url, &DialOptions{
				ConnOptions: ConnOptions{
					Logger: logger,
				},
				Retry: RetryOptions{InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond, MaxTries: 3},
			})
			if he, ok := errors.AsType[*HTTPError](err); !ok || he.StatusCode != code {
				t.Fatalf("Dial: err = %v, want an *HTTPError with status %d", err, code)
			}
			if want := "wsrpc: connect " + url + ": " + statusLine(code) + ": try later"; err.Error() != want {
				t.Errorf("Dial: error text\n%q, want\n%q", err.Error(), want)
			}
			if n := requests.Load(); n != 3 {
				t.Errorf("server saw %d requests, want 3 (MaxTries)", n)
			}
			logs.wantNoRecords(t, "Dial's retries")
		})
	}
}

// TestDialMaxElapsedTimeSocket: over a real socket, Dial stops retrying a
// server that keeps refusing once the next try would start past
// MaxElapsedTime, and returns the last try's error, not its context's.
// (TestDialMaxElapsedTime checks the exact times, on a fake clock.)
func TestDialMaxElapsedTimeSocket(t *testing.T) {
	const maxElapsed, maxInterval = 400 * time.Millisecond, 50 * time.Millisecond
	hs, requests, _ := countingServer(t, func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "try later", http.StatusServiceUnavailable)
	})
	start := time.Now()
	_, err := Dial(ctxT(t), wsURLOf(hs, "/ws"), &DialOptions{
		ConnOptions: ConnOptions{Logger: quiet()},
		Retry:       RetryOptions{InitialInterval: 10 * time.Millisecond, MaxInterval: maxInterval, MaxElapsedTime: maxElapsed},
	})
	took := time.Since(start)
	if he, ok := errors.AsType[*HTTPError](err); !ok || he.StatusCode != http.StatusServiceUnavailable || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial: err = %v, want the last try's *HTTPError 503", err)
	}
	// The last try starts past MaxElapsedTime less the longest wait; the
	// real clock only adds to the waits, so this is a lower bound. (A Dial
	// that went on past MaxElapsedTime would end with its context's
	// error, which the check above refuses.)
	if took <= maxElapsed-maxInterval*3/2 {
		t.Errorf("Dial returned after %v, want more than %v", took, maxElapsed-maxInterval*3/2)
	}
	n := requests.Load()
	if n < 2 {
		t.Errorf("server saw %d requests, want retries", n)
	}
	time.Sleep(3 * maxInterval)
	if m := requests.Load(); m != n {
		t.Errorf("server saw %d requests after Dial returned, want none", m-n)
	}
}

// TestDialContextBoundsRetriesSocket: over a real socket, without MaxTries,
// Dial retries a refusing server until its context ends and returns then,
// with the context's error and the last try's. (TestDialContextBoundsRetries
// checks the exact times, on a fake clock.)
func TestDialContextBoundsRetriesSocket(t *testing.T) {
	const timeout = 300 * time.Millisecond
	hs, requests, _ := countingServer(t, func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "try later", http.StatusServiceUnavailable)
	})
	start := time.Now() // before the deadline is set: took is at least timeout
	ctx, cancel := context.WithTimeout(ctxT(t), timeout)
	defer cancel()
	_, err := Dial(ctx, wsURLOf(hs, "/ws"), &DialOptions{
		ConnOptions: ConnOptions{Logger: quiet()},
		Retry:       RetryOptions{InitialInterval: 10 * time.Millisecond, MaxInterval: 50 * time.Millisecond},
	})
	// Not before its context's end (the real clock only adds to that); how
	// soon after is TestDialContextBoundsRetries's, on the fake clock.
	if took := time.Since(start); took < timeout {
		t.Errorf("Dial returned after %v, before its context's %v", took, timeout)
	}
	if he, ok := errors.AsType[*HTTPError](err); !ok || he.StatusCode != http.StatusServiceUnavailable || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial: %v, want context.DeadlineExceeded and the last try's *HTTPError 503", err)
	}
	if n := requests.Load(); n < 2 {
		t.Errorf("server saw %d requests, want retries", n)
	}
}

// TestWaitForReadyCallTimeoutSocket: over a real socket, with
// WaitForReady, a call without a deadline made while the client cannot
// reconnect waits for a connection at most CallTimeout, then fails with
// ErrNotConnected and context.DeadlineExceeded. (TestWaitForReadyCallTimeout
// checks the exact wait, on a fake clock.)
func TestWaitForReadyCallTimeoutSocket(t *testing.T) {
	ctx := ctxT(t)
	const callTimeout = 300 * time.Millisecond
	var broken atomic.Bool
	var refused atomic.Int32
	srv := mustServer(t, utilMux(), &ServerOptions{ConnOptions: ConnOptions{Logger: quiet()}})
	hs := wsHTTPServer(t, srv, false, brokenable(&broken, http.StatusServiceUnavailable, &refused))
	lost := make(chan error, 1)
	cl := testDial(t, wsURLOf(hs, "/ws"), &DialOptions{
		ConnOptions: ConnOptions{
			CallTimeout:  callTimeout,
			OnDisconnect: func(_ *Conn, err error) { sendNoWait(lost, err) },
		},
		Retry:        fastRetry,
		WaitForReady: true,
	})
	broken.Store(true)
	serverConn(t, srv).Close()
	recv(ctx, t, lost, "the client's OnDisconnect")
	// The client tries to reconnect and is refused: it cannot reconnect.
	// (Counting tries within CallTimeout would be a timing assert: a
	// loaded machine may take longer than that to make one.)
	pollUntil(t, "a refused reconnect try", func() bool { return refused.Load() > 0 })
	start := time.Now()
	err := cl.Call(context.Background(), "echo", textArgs{"x"}, nil)
	// Not before CallTimeout (the real clock only adds to that); how soon
	// after is TestWaitForReadyCallTimeout's, on the fake clock.
	if took := time.Since(start); took < callTimeout {
		t.Errorf("the call waited %v, less than CallTimeout %v", took, callTimeout)
	}
	if !errors.Is(err, ErrNotConnected) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("call: %v, want ErrNotConnected and context.DeadlineExceeded", err)
	}
	tries := refused.Load()
	pollUntil(t, "the client to keep trying", func() bool { return refused.Load() > tries })
	broken.Store(false) // let the client reconnect before it closes
	mustEcho(ctx, t, cl, "once the server is back")
}

// brokenable wraps a handler: while broken is set it answers with status
// and counts the requests it refused.
func brokenable(broken *atomic.Bool, status int, refused *atomic.Int32) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if broken.Load() {
				refused.Add(1)
				http.Error(w, http.StatusText(status), status)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// TestReconnectRetriesWrongURL: once a client has connected, a 404 on
// reconnect (a server being deployed) is retried with backoff, quietly,
// until the endpoint is back.
func TestReconnectRetriesWrongURL(t *testing.T) {
	ctx := ctxT(t)
	var broken atomic.Bool
	var refused atomic.Int32
	srv := mustServer(t, utilMux(), &ServerOptions{ConnOptions: ConnOptions{Logger: quiet()}})
	hs := wsHTTPServer(t, srv, false, brokenable(&broken, http.StatusNotFound, &refused))
	logger, logs := infoLogger()
	connected := make(chan struct{}, 4)
	cl := testDial(t, wsURLOf(hs, "/ws"), &DialOptions{
		ConnOptions: ConnOptions{
			Logger:    logger,
			OnConnect: func(context.Context, *Conn) error { sendNoWait(connected, struct{}{}); return nil },
		},
		Retry: fastRetry,
	})
	recv(ctx, t, connected, "the first OnConnect")

	broken.Store(true)
	serverConn(t, srv).Close()
	pollUntil(t, "three refused reconnect tries", func() bool { return refused.Load() >= 3 })
	select {
	case <-cl.Done():
		t.Fatalf("the client gave up on a 404 after it had connected: %v", cl.Err())
	default:
	}
	broken.Store(false)
	recv(ctx, t, connected, "the OnConnect of the reconnect")
	// The connection is the client's once its hooks returned.
	pollUntil(t, "the reconnect to be the client's", func() bool { return cl.Conn() != nil })
	mustEcho(ctx, t, cl, "after the 404s")
	logs.wantNoRecords(t, "a reconnect through 404s")
}

// TestReconnectGiveUpLogged: a client whose reconnect runs out of tries
// ends with the last answer, and says so in one Error record, with nothing
// else at Info or above.
func TestReconnectGiveUpLogged(t *testing.T) {
	ctx := ctxT(t)
	var broken atomic.Bool
	var refused atomic.Int32
	srv := mustServer(t, utilMux(), &ServerOptions{ConnOptions: ConnOptions{Logger: quiet()}})
	hs := wsHTTPServer(t, srv, false, brokenable(&broken, http.StatusServiceUnavailable, &refused))
	logger, logs := infoLogger()
	cl := testDial(t, wsURLOf(hs, "/ws"), &DialOptions{
		ConnOptions: ConnOptions{
			Logger: logger,
		},
		Retry: RetryOptions{InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond, MaxTries: 2},
	})
	mustEcho(ctx, t, cl, "before")

	broken.Store(true)
	serverConn(t, srv).Close()
	recv(ctx, t, cl.Done(), "the client to give up")
	if he, ok := errors.AsType[*HTTPError](cl.Err()); !ok || he.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("Err() = %v, want an *HTTPError with status 503", cl.Err())
	}
	if n := refused.Load(); n != 2 {
		t.Errorf("server refused %d reconnect tries, want 2 (MaxTries)", n)
	}
	recs := logs.records(t)
	if len(recs) != 1 || recs[0]["level"] != "ERROR" || recs[0]["msg"] != "client gave up reconnecting" {
		t.Errorf("logged %q, want one Error record \"client gave up reconnecting\"", brief(recs))
	}
}

// TestLogLevels: a normal dial, call and close log nothing at Info or
// above on either side; a handler's panic is an Error record (and reaches
// OnError).
func TestLogLevels(t *testing.T) {
	ctx := ctxT(t)
	mux := utilMux()
	mux.HandleFunc("boom", func(context.Context, json.RawMessage) (any, error) { panic("boom") })
	srvLogger, srvLogs := infoLogger()
	reported := make(chan error, 1)
	srv, url := testServer(t, mux, &ServerOptions{
		ConnOptions: ConnOptions{
			Logger:  srvLogger,
			OnError: func(_ *Conn, err error) { sendNoWait(reported, err) },
		},
	})
	clLogger, clLogs := infoLogger()
	cl := testDial(t, url, &DialOptions{ConnOptions: ConnOptions{Logger: clLogger}})
	mustEcho(ctx, t, cl, "hello")
	cl.Close()
	waitConnsDone(t, srv)
	clLogs.wantNoRecords(t, "the client of a normal dial, call and close")
	srvLogs.wantNoRecords(t, "the server of a normal dial, call and close")

	cl = testDial(t, url, &DialOptions{ConnOptions: ConnOptions{Logger: clLogger}})
	var rerr *Error
	if err := cl.Call(ctx, "boom", nil, nil); !errors.As(err, &rerr) || rerr.Code != CodeInternalError {
		t.Fatalf("call to a panicking handler: %v, want a CodeInternalError *Error", err)
	}
	if err := recv(ctx, t, reported, "OnError"); !errors.As(err, new(*PanicError)) {
		t.Errorf("OnError got %v, want a *PanicError", err)
	}
	recs := srvLogs.records(t)
	if len(recs) != 1 || recs[0]["level"] != "ERROR" || recs[0]["msg"] != "handler panicked" ||
		recs[0]["method"] != "boom" || recs[0]["stack"] == "" || recs[0]["stack"] == nil {
		t.Errorf("the server logged %q, want one Error record \"handler panicked\" with method boom and the stack", brief(recs))
	}
	clLogs.wantNoRecords(t, "the client of a call to a panicking handler")
}

// TestDialIndexed: once Dial returns, the server's indexes have the
// connection (its upgrade response is written after it is indexed), so
// that a call routed to the client right after it connected finds it.
func TestDialIndexed(t *testing.T) {
	srv, u := testServer(t, utilMux(), nil)
	for i := range 100 {
		id := fmt.Sprintf("client-%d", i)
		cl := testDial(t, u+"/"+id, nil)
		if got := srv.ConnsByPathValue("client_id", id); len(got) != 1 {
			t.Fatalf("dial %d: Dial returned, and the server has %d connections for %s, want 1", i, len(got), id)
		}
		cl.Close()
	}
}

// TestDialURLSchemes: Dial takes http:// and https:// URLs for ws:// and
// wss:// (plain and TLS), and refuses, at once and without a retry, a
// URL it cannot parse or one of another scheme.
func TestDialURLSchemes(t *testing.T) {
	ctx := ctxT(t)
	for _, useTLS := range []bool{false, true} {
		srv := mustServer(t, echoMux(), &ServerOptions{ConnOptions: ConnOptions{Logger: quiet()}})
		hs := wsHTTPServer(t, srv, useTLS, nil)
		opts := &DialOptions{ConnOptions: ConnOptions{Logger: quiet()}}
		if useTLS {
			opts.TLSConfig = trusting(hs)
		}
		cl := testDial(t, hs.URL+"/ws", opts) // http:// or https://
		mustEcho(ctx, t, cl, "over "+hs.URL)
	}
	for _, bad := range []string{"ftp://127.0.0.1:1/ws", "127.0.0.1:1/ws", "ws://[::1/ws", ""} {
		_, err := Dial(ctx, bad, &DialOptions{ConnOptions: ConnOptions{Logger: quiet()}})
		if err == nil || !strings.HasPrefix(err.Error(), "wsrpc: dial: ") {
			t.Errorf("Dial(%q): %v, want a dial error", bad, err)
		}
	}
}
