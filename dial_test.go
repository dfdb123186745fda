package wsrpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

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

// TestReconnectGiveUpLogged: a client whose reconnect runs out of tries
// ends with the last answer, and says so in one Error record, with nothing
// else at Info or above.
func TestReconnectGiveUpLogged(t *testing.T) {
	ctx := ctxT(t)
	var broken atomic.Bool
	var refused atomic.Int32
	srv := NewServer(utilMux(), &ServerOptions{Logger: quiet()})
	hs := wsHTTPServer(t, srv, false, brokenable(&broken, http.StatusServiceUnavailable, &refused))
	logger, logs := infoLogger()
	cl := testDial(t, wsURLOf(hs, "/ws"), &DialOptions{
		Logger: logger,
		Retry:  RetryOptions{InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond, MaxTries: 2},
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
		Logger:  srvLogger,
		OnError: func(_ *Conn, err error) { sendNoWait(reported, err) },
	})
	clLogger, clLogs := infoLogger()
	cl := testDial(t, url, &DialOptions{Logger: clLogger})
	mustEcho(ctx, t, cl, "hello")
	cl.Close()
	waitConnsDone(t, srv)
	clLogs.wantNoRecords(t, "the client of a normal dial, call and close")
	srvLogs.wantNoRecords(t, "the server of a normal dial, call and close")

	cl = testDial(t, url, &DialOptions{Logger: clLogger})
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
