package wsrpc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsrpc/wsrpc/internal/testproxy"
)

// Helpers shared by the network tests (network_test.go, auth_test.go,
// reconnect_test.go, shutdown_test.go).

// wsHTTPServer serves srv at /ws and /ws/{client_id} on a loopback
// httptest server, over TLS if useTLS, with wrap (if not nil) in front of
// it. srv and the server are closed when the test ends.
func wsHTTPServer(t *testing.T, srv *Server, useTLS bool, wrap func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	hm := http.NewServeMux()
	hm.Handle("/ws", srv)
	hm.Handle("/ws/{client_id}", srv)
	var h http.Handler = hm
	if wrap != nil {
		h = wrap(hm)
	}
	hs := httptest.NewUnstartedServer(h)
	hs.Config.ErrorLog = log.New(io.Discard, "", 0) // TLS handshake errors are expected in some tests
	if useTLS {
		hs.StartTLS()
	} else {
		hs.Start()
	}
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
		waitConnsDone(t, srv)
	})
	return hs
}

// trusting returns a TLS client configuration that trusts hs's
// certificate, and nothing else.
func trusting(hs *httptest.Server) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(hs.Certificate())
	return &tls.Config{RootCAs: pool}
}

// wsURLOf returns the ws:// or wss:// URL of path on hs.
func wsURLOf(hs *httptest.Server, path string) string {
	return "ws" + strings.TrimPrefix(hs.URL, "http") + path
}

// hostOf returns the host:port of a URL.
func hostOf(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// utilMux returns a Mux with the utility methods (echo and the rest).
func utilMux() *Mux {
	m := NewMux()
	RegisterUtilities(m)
	return m
}

// tryDial dials like testDial but returns the error; ctx bounds it.
func tryDial(ctx context.Context, t *testing.T, rawURL string, opts *DialOptions) (*Client, error) {
	t.Helper()
	if opts == nil {
		opts = &DialOptions{}
	}
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	cl, err := Dial(ctx, rawURL, opts)
	if err == nil {
		t.Cleanup(func() { cl.Close() })
	}
	return cl, err
}

// mustEcho calls echo on c and checks the answer.
func mustEcho(ctx context.Context, t *testing.T, c Caller, text string) {
	t.Helper()
	got, err := Call[string](ctx, c, "echo", map[string]string{"text": text})
	if err != nil {
		t.Fatalf("echo(%q): %v", text, err)
	}
	if got != text {
		t.Fatalf("echo(%q) = %q", text, got)
	}
}

// recv waits for a value on ch, failing the test if ctx ends first.
func recv[T any](ctx context.Context, t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatalf("waiting for %s: %v", what, ctx.Err())
		panic("unreachable")
	}
}

// pollUntil polls cond until it holds, failing the test after a minute. Use it
// only for states no hook or channel reports.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // against a hang, not a timing assertion
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestTLS(t *testing.T) {
	ctx := ctxT(t)
	srv := mustServer(t, utilMux(), &ServerOptions{ConnOptions: ConnOptions{Logger: quiet()}})
	hs := wsHTTPServer(t, srv, true, nil)

	t.Run("trusted", func(t *testing.T) {
		cl := testDial(t, wsURLOf(hs, "/ws"), &DialOptions{TLSConfig: trusting(hs)})
		mustEcho(ctx, t, cl, "over tls")
		if serverConn(t, srv).Request().TLS == nil {
			t.Error("the server's connection did not come over TLS")
		}
	})
	t.Run("untrusted", func(t *testing.T) {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := tryDial(dctx, t, wsURLOf(hs, "/ws"), &DialOptions{Retry: RetryOptions{MaxTries: 1}})
		var ue x509.UnknownAuthorityError
		if !errors.As(err, &ue) {
			t.Fatalf("Dial without the server's CA: err = %v, want x509.UnknownAuthorityError", err)
		}
	})
}

func TestProxyConnect(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		name := "ws"
		if useTLS {
			name = "wss"
		}
		t.Run(name, func(t *testing.T) {
			ctx := ctxT(t)
			srv := mustServer(t, utilMux(), &ServerOptions{ConnOptions: ConnOptions{Logger: quiet()}})
			hs := wsHTTPServer(t, srv, useTLS, nil)
			proxy := testproxy.NewConnectProxy(t)
			opts := &DialOptions{Proxy: http.ProxyURL(proxy.URL())}
			if useTLS {
				opts.TLSConfig = trusting(hs)
			}
			cl := testDial(t, wsURLOf(hs, "/ws"), opts)
			mustEcho(ctx, t, cl, "through the proxy")

			target := hostOf(t, hs.URL)
			if got := proxy.Requests(); !slices.Equal(got, []string{target}) {
				t.Errorf("proxy saw CONNECT %q, want [%q]", got, target)
			}
			if c := serverConn(t, srv); (c.Request().TLS != nil) != useTLS {
				t.Errorf("server connection TLS = %v, want %v", c.Request().TLS != nil, useTLS)
			}
		})
	}
}

// Environment of the child process of TestProxyFromEnvironment.
const (
	proxyChildEnv    = "WSRPC_TEST_PROXY_CHILD" // "ok" or "fail": what the child's Dial must do
	proxyChildURLEnv = "WSRPC_TEST_PROXY_CHILD_URL"
	proxyChildCAEnv  = "WSRPC_TEST_PROXY_CHILD_CA" // PEM of the wss:// server's certificate
)

// TestProxyFromEnvironment checks that a client with no Proxy option uses
// HTTP_PROXY and HTTPS_PROXY and honours NO_PROXY. net/http reads the
// environment once per process, so each case runs in a child process:
// this test binary, run again for this test only. The client dials the
// name wsrpc.test, which only the proxy resolves (to the loopback server).
func TestProxyFromEnvironment(t *testing.T) {
	if mode := os.Getenv(proxyChildEnv); mode != "" {
		proxyEnvChild(t, mode, os.Getenv(proxyChildURLEnv), os.Getenv(proxyChildCAEnv))
		return
	}
	ctx := ctxT(t)
	plain := wsHTTPServer(t, mustServer(t, utilMux(), &ServerOptions{ConnOptions: ConnOptions{Logger: quiet()}}), false, nil)
	secure := wsHTTPServer(t, mustServer(t, utilMux(), &ServerOptions{ConnOptions: ConnOptions{Logger: quiet()}}), true, nil)
	ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: secure.Certificate().Raw}))
	// testName returns wsrpc.test with hs's port, and hs's real address.
	testName := func(hs *httptest.Server) (name, addr string) {
		addr = hostOf(t, hs.URL)
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		return net.JoinHostPort("wsrpc.test", port), addr
	}
	plainName, plainAddr := testName(plain)
	secureName, secureAddr := testName(secure)

	tests := []struct {
		name      string
		env       []string // "{proxy}" stands for the proxy's URL
		url       string
		mode      string
		wantProxy []string
	}{
		{"HTTP_PROXY", []string{"HTTP_PROXY={proxy}"}, "ws://" + plainName + "/ws", "ok", []string{plainName}},
		{"HTTPS_PROXY", []string{"HTTPS_PROXY={proxy}"}, "wss://" + secureName + "/ws", "ok", []string{secureName}},
		{"NO_PROXY", []string{"HTTP_PROXY={proxy}", "NO_PROXY=wsrpc.test"}, "ws://" + plainName + "/ws", "fail", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proxy := testproxy.NewConnectProxy(t)
			proxy.Rewrite(plainName, plainAddr)
			proxy.Rewrite(secureName, secureAddr)

			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestProxyFromEnvironment$", "-test.count=1", "-test.v")
			cmd.Env = append(envWithoutProxy(),
				proxyChildEnv+"="+tt.mode,
				proxyChildURLEnv+"="+tt.url,
				proxyChildCAEnv+"="+ca,
				// The race detector's default 1 s pause at exit is not needed.
				"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"),
			)
			for _, kv := range tt.env {
				cmd.Env = append(cmd.Env, strings.ReplaceAll(kv, "{proxy}", proxy.URL().String()))
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child process: %v\n%s", err, out)
			}
			if got := proxy.Requests(); !slices.Equal(got, tt.wantProxy) {
				t.Errorf("proxy saw CONNECT %q, want %q", got, tt.wantProxy)
			}
		})
	}
}

// proxyEnvChild is TestProxyFromEnvironment in the child process: it
// dials rawURL with the default Proxy option and, in mode "ok", calls echo;
// in mode "fail" the dial must fail. caPEM is trusted for wss://.
func proxyEnvChild(t *testing.T, mode, rawURL, caPEM string) {
	ctx := ctxT(t) // a bound against a hang, as in every test
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(caPEM)) {
		t.Fatal("no CA certificate in the environment")
	}
	// The httptest certificate names example.com, not wsrpc.test.
	tlsConfig := &tls.Config{RootCAs: pool, ServerName: "example.com"}
	cl, err := tryDial(ctx, t, rawURL, &DialOptions{TLSConfig: tlsConfig, Retry: RetryOptions{MaxTries: 1}})
	switch mode {
	case "ok":
		if err != nil {
			t.Fatalf("Dial(%s): %v", rawURL, err)
		}
		mustEcho(ctx, t, cl, "via the proxy from the environment")
	case "fail":
		if err == nil {
			t.Fatalf("Dial(%s) succeeded; without the proxy the name should not resolve", rawURL)
		}
		t.Logf("Dial failed as expected: %v", err)
	default:
		t.Fatalf("unknown child mode %q", mode)
	}
}

// envWithoutProxy returns the environment without any variable that
// http.ProxyFromEnvironment reads.
func envWithoutProxy() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "REQUEST_METHOD", "GORACE",
			proxyChildEnv, proxyChildURLEnv, proxyChildCAEnv:
			continue
		}
		env = append(env, kv)
	}
	return env
}

func TestBinaryFrames(t *testing.T) {
	tests := []struct {
		name           string
		server, client bool
	}{
		{"both", true, true},
		{"server only", true, false},
		{"client only", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxT(t)
			srv, u := testServer(t, utilMux(), &ServerOptions{ConnOptions: ConnOptions{BinaryFrames: tt.server}})
			cl := testDial(t, u, &DialOptions{Methods: utilMux(), ConnOptions: ConnOptions{BinaryFrames: tt.client}})
			mustEcho(ctx, t, cl, "client to server")
			mustEcho(ctx, t, serverConn(t, srv), "server to client")
		})
	}
}

// TestBinaryFramesOnTheWire checks with a plain WebSocket peer that the
// option really sends binary messages, and that text ones are still
// accepted.
func TestBinaryFramesOnTheWire(t *testing.T) {
	type envelope struct {
		Request *struct {
			Method string `json:"method"`
			CallID string `json:"call_id"`
		} `json:"request"`
		Response *struct {
			Result json.RawMessage `json:"result"`
			CallID string          `json:"call_id"`
		} `json:"response"`
	}

	t.Run("server", func(t *testing.T) {
		ctx := ctxT(t)
		_, u := testServer(t, utilMux(), &ServerOptions{ConnOptions: ConnOptions{BinaryFrames: true}})
		ws, _, err := websocket.DefaultDialer.DialContext(ctx, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		for _, mt := range []int{websocket.TextMessage, websocket.BinaryMessage} {
			req := `{"request": {"method": "echo", "arguments": {"text": "hi"}, "call_id": "c1"}, "response": null}`
			if err := ws.WriteMessage(mt, []byte(req)); err != nil {
				t.Fatal(err)
			}
			gotType, b, err := ws.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			var env envelope
			if err := json.Unmarshal(b, &env); err != nil {
				t.Fatalf("answer %s: %v", b, err)
			}
			if gotType != websocket.BinaryMessage || env.Response == nil || string(env.Response.Result) != `"hi"` || env.Response.CallID != "c1" {
				t.Errorf("request as message type %d: answer type %d %s, want a binary answer with result \"hi\"", mt, gotType, b)
			}
		}
		ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	})

	t.Run("client", func(t *testing.T) {
		ctx := ctxT(t)
		type seen struct {
			mt  int
			env envelope
			err error
		}
		frames := make(chan seen, 1)
		handlerDone := make(chan struct{})
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer close(handlerDone)
			ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
			if err != nil {
				frames <- seen{err: err}
				return
			}
			defer ws.Close()
			mt, b, err := ws.ReadMessage()
			var env envelope
			if err == nil {
				err = json.Unmarshal(b, &env)
			}
			frames <- seen{mt, env, err}
			if err != nil || env.Request == nil {
				return
			}
			// Answer in a text frame: a binary client still accepts it.
			resp := `{"request": null, "response": {"result": "pong-ish", "result_type": "str", "call_id": "` + env.Request.CallID + `"}}`
			ws.WriteMessage(websocket.TextMessage, []byte(resp))
			for { // until the client closes
				if _, _, err := ws.ReadMessage(); err != nil {
					return
				}
			}
		}))
		defer hs.Close()
		cl := testDial(t, wsURLOf(hs, "/"), &DialOptions{ConnOptions: ConnOptions{BinaryFrames: true}})
		got, err := Call[string](ctx, cl, "anything", nil)
		if err != nil || got != "pong-ish" {
			t.Errorf("Call = %q, %v; want \"pong-ish\"", got, err)
		}
		s := recv(ctx, t, frames, "the client's frame")
		if s.err != nil {
			t.Fatal(s.err)
		}
		if s.mt != websocket.BinaryMessage || s.env.Request == nil || s.env.Request.Method != "anything" {
			t.Errorf("client sent message type %d, request %+v; want a binary request for \"anything\"", s.mt, s.env.Request)
		}
		cl.Close()
		recv(ctx, t, handlerDone, "the plain server's handler to return")
	})
}

// TestNetDialContext: a custom dialer opens the connection, here from a
// chosen loopback source address.
func TestNetDialContext(t *testing.T) {
	srv, url := testServer(t, echoMux(), nil)
	var dialed atomic.Int32
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	cl := testDial(t, url, &DialOptions{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialed.Add(1)
		return d.DialContext(ctx, network, addr)
	}})
	if got, err := Call[string](ctxT(t), cl, "echo", textArgs{"via"}); err != nil || got != "via" {
		t.Fatalf("echo = %q, %v", got, err)
	}
	if dialed.Load() != 1 {
		t.Errorf("custom dialer used %d times, want 1", dialed.Load())
	}
	if host, _, _ := net.SplitHostPort(serverConn(t, srv).RemoteAddr().String()); host != "127.0.0.2" {
		t.Errorf("server sees the client at %s, want 127.0.0.2", host)
	}
}

// TestURLSecretsNotLogged: a token in the URL's query reaches the server
// but never the client's logs or errors; credentials in the URL are
// refused.
func TestURLSecretsNotLogged(t *testing.T) {
	m := NewMux()
	Register(m, "token", func(ctx context.Context, _ struct{}) (string, error) {
		return ConnFromContext(ctx).Request().URL.Query().Get("token"), nil
	})
	_, url := testServer(t, m, nil)
	var logs strings.Builder
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cl := testDial(t, url+"?token=s3cret", &DialOptions{ConnOptions: ConnOptions{Logger: logger}})
	if got, err := Call[string](ctxT(t), cl, "token", nil); err != nil || got != "s3cret" {
		t.Fatalf("token = %q, %v", got, err)
	}
	_, err := Dial(ctxT(t), strings.Replace(url, "127.0.0.1", "127.0.0.1:1", 1)+"?token=s3cret", &DialOptions{ConnOptions: ConnOptions{Logger: logger}, Retry: RetryOptions{MaxTries: 1}})
	mu.Lock()
	defer mu.Unlock()
	if err == nil || strings.Contains(err.Error(), "s3cret") || strings.Contains(logs.String(), "s3cret") {
		t.Errorf("the token leaked: err %v\nlogs %s", err, logs.String())
	}
	if _, err := Dial(ctxT(t), strings.Replace(url, "ws://", "ws://user:pass@", 1), &DialOptions{ConnOptions: ConnOptions{Logger: quiet()}}); err == nil || strings.Contains(err.Error(), "pass") {
		t.Errorf("credentials in the URL: %v", err)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
