package wsrpc

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// manyTries is a retry policy that would retry a refusal many times, fast.
var manyTries = RetryOptions{InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond, MaxTries: 20}

func TestAuthRefusalIsFinal(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantMsg    string
	}{
		{"401", &HTTPError{StatusCode: http.StatusUnauthorized, Message: "bad token"}, 401, "bad token"},
		{"403", &HTTPError{StatusCode: http.StatusForbidden}, 403, "Forbidden"},
		{"plain error", errors.New("secret reason"), 403, "Forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxT(t)
			var attempts atomic.Int32
			srv := mustServer(t, utilMux(), &ServerOptions{
				ConnOptions: ConnOptions{
					Logger: quiet(),
				},
				Authenticate: func(*http.Request) (any, error) {
					attempts.Add(1)
					return nil, tt.err
				},
			})
			hs := wsHTTPServer(t, srv, false, nil)
			_, err := tryDial(ctx, t, wsURLOf(hs, "/ws"), &DialOptions{Retry: manyTries})
			he, ok := errors.AsType[*HTTPError](err)
			if !ok {
				t.Fatalf("Dial: err = %v, want an *HTTPError", err)
			}
			if he.StatusCode != tt.wantStatus || he.Message != tt.wantMsg {
				t.Errorf("Dial: HTTPError{%d, %q}, want {%d, %q}", he.StatusCode, he.Message, tt.wantStatus, tt.wantMsg)
			}
			if n := attempts.Load(); n != 1 {
				t.Errorf("server saw %d attempts, want 1 (a refusal is not retried)", n)
			}
		})
	}
}

func TestDialRetriesServerErrors(t *testing.T) {
	for _, status := range []int{http.StatusInternalServerError, http.StatusServiceUnavailable} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			ctx := ctxT(t)
			const failures = 3
			var requests atomic.Int32
			srv := mustServer(t, utilMux(), &ServerOptions{ConnOptions: ConnOptions{Logger: quiet()}})
			hs := wsHTTPServer(t, srv, false, func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if requests.Add(1) <= failures {
						http.Error(w, "not yet", status)
						return
					}
					next.ServeHTTP(w, r)
				})
			})
			retry := RetryOptions{InitialInterval: 10 * time.Millisecond, MaxInterval: 20 * time.Millisecond, MaxTries: 10}
			cl, err := tryDial(ctx, t, wsURLOf(hs, "/ws"), &DialOptions{Retry: retry})
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			if n := requests.Load(); n != failures+1 {
				t.Errorf("server saw %d requests, want %d", n, failures+1)
			}
			mustEcho(ctx, t, cl, "after retries")
		})
	}

	t.Run("tries exhausted", func(t *testing.T) {
		ctx := ctxT(t)
		var requests atomic.Int32
		srv := mustServer(t, nil, &ServerOptions{ConnOptions: ConnOptions{Logger: quiet()}})
		hs := wsHTTPServer(t, srv, false, func(http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				http.Error(w, "down", http.StatusServiceUnavailable)
			})
		})
		_, err := tryDial(ctx, t, wsURLOf(hs, "/ws"), &DialOptions{Retry: RetryOptions{InitialInterval: time.Millisecond, MaxTries: 3}})
		if he, ok := errors.AsType[*HTTPError](err); !ok || he.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("Dial: err = %v, want an *HTTPError with status 503", err)
		}
		if n := requests.Load(); n != 3 {
			t.Errorf("server saw %d requests, want 3 (MaxTries)", n)
		}
	})
}

func TestAuthSeesRequest(t *testing.T) {
	ctx := ctxT(t)
	type seen struct{ token, clientID string }
	hookSaw := make(chan seen, 2)
	mux := NewMux()
	type user struct{ name string }
	Register(mux, "whoami", func(ctx context.Context, _ struct{}) (map[string]string, error) {
		c := ConnFromContext(ctx)
		u, _ := c.Identity().(*user)
		if u == nil {
			return nil, Errorf(CodeInternalError, "no identity on the connection")
		}
		return map[string]string{"client_id": c.PathValue("client_id"), "token": c.Request().Header.Get("X-Token"), "user": u.name}, nil
	})
	connectSaw := make(chan any, 1)
	srv := mustServer(t, mux, &ServerOptions{
		ConnOptions: ConnOptions{
			Logger:    quiet(),
			OnConnect: func(_ context.Context, c *Conn) error { connectSaw <- c.Identity(); return nil },
		},
		Authenticate: func(r *http.Request) (any, error) {
			hookSaw <- seen{r.Header.Get("X-Token"), r.PathValue("client_id")}
			if r.Header.Get("X-Token") != "s3cret" {
				return nil, &HTTPError{StatusCode: http.StatusUnauthorized}
			}
			return &user{name: "user-" + r.PathValue("client_id")}, nil
		},
	})
	hs := wsHTTPServer(t, srv, false, nil)

	cl := testDial(t, wsURLOf(hs, "/ws/alice"), &DialOptions{Header: http.Header{"X-Token": {"s3cret"}}})
	if got := recv(ctx, t, hookSaw, "the Authenticate hook"); got != (seen{"s3cret", "alice"}) {
		t.Errorf("Authenticate saw %+v, want token s3cret and client_id alice", got)
	}
	got, err := Call[map[string]string](ctx, cl, "whoami", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got["client_id"] != "alice" || got["token"] != "s3cret" || got["user"] != "user-alice" {
		t.Errorf("whoami = %v, want client_id alice, token s3cret and the identity user-alice", got)
	}
	if u, ok := recv(ctx, t, connectSaw, "OnConnect").(*user); !ok || u.name != "user-alice" {
		t.Errorf("OnConnect saw the identity %v, want user-alice", u)
	}
	if id := cl.Conn().Identity(); id != nil {
		t.Errorf("a client's connection has the identity %v, want nil", id)
	}

	_, err = tryDial(ctx, t, wsURLOf(hs, "/ws/mallory"), &DialOptions{Header: http.Header{"X-Token": {"guess"}}, Retry: manyTries})
	if he, ok := errors.AsType[*HTTPError](err); !ok || he.StatusCode != http.StatusUnauthorized {
		t.Errorf("Dial with a wrong token: err = %v, want an *HTTPError with status 401", err)
	}
}

func TestOriginCheck(t *testing.T) {
	tests := []struct {
		name     string
		patterns []string
		origin   string // "self" means the server's own host
		ok       bool
	}{
		{name: "no origin", origin: "", ok: true},
		{name: "same host", origin: "self", ok: true},
		{name: "foreign", origin: "https://evil.example", ok: false},
		{name: "foreign, other pattern", patterns: []string{"*.example.com"}, origin: "https://evil.example", ok: false},
		{name: "pattern match", patterns: []string{"*.example.com"}, origin: "https://app.example.com", ok: true},
		{name: "pattern with port", patterns: []string{"localhost:3000"}, origin: "http://localhost:3000", ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxT(t)
			var requests atomic.Int32
			srv := mustServer(t, utilMux(), &ServerOptions{ConnOptions: ConnOptions{Logger: quiet()}, OriginPatterns: tt.patterns})
			hs := wsHTTPServer(t, srv, false, func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					requests.Add(1)
					next.ServeHTTP(w, r)
				})
			})
			origin := tt.origin
			if origin == "self" {
				origin = hs.URL
			}
			h := http.Header{}
			if origin != "" {
				h.Set("Origin", origin)
			}
			cl, err := tryDial(ctx, t, wsURLOf(hs, "/ws"), &DialOptions{Header: h, Retry: manyTries})
			if tt.ok {
				if err != nil {
					t.Fatalf("Dial with Origin %q: %v", origin, err)
				}
				mustEcho(ctx, t, cl, "origin ok")
				return
			}
			if he, ok := errors.AsType[*HTTPError](err); !ok || he.StatusCode != http.StatusForbidden {
				t.Errorf("Dial with Origin %q: err = %v, want an *HTTPError with status 403", origin, err)
			}
			if n := requests.Load(); n != 1 {
				t.Errorf("server saw %d requests, want 1 (a refusal is not retried)", n)
			}
		})
	}
}
