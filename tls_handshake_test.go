package wsrpc

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Tests of client-certificate authentication (mutual TLS) and of the
// handshake timeouts on both sides. Every certificate is made at test time
// and everything listens on 127.0.0.1 only.

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool // holds cert alone
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	cert, key, _ := newCert(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, nil)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue returns a certificate signed by ca for commonName: a server
// certificate for 127.0.0.1 if usage is ExtKeyUsageServerAuth, a client
// certificate if it is ExtKeyUsageClientAuth.
func (ca *testCA) issue(t *testing.T, commonName string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	if usage == x509.ExtKeyUsageServerAuth {
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	leaf, key, der := newCert(t, tmpl, ca)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// newCert makes a key and a certificate from tmpl, valid for an hour
// either side of now, signed by ca (by itself if ca is nil).
func newCert(t *testing.T, tmpl *x509.Certificate, ca *testCA) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = randomSerial(t)
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	parent, parentKey := tmpl, key
	if ca != nil {
		parent, parentKey = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key, der
}

func randomSerial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// lineSink is an io.Writer for a log.Logger that passes each line on,
// dropping lines nobody has room for.
type lineSink chan string

func (s lineSink) Write(p []byte) (int, error) {
	select {
	case s <- string(p):
	default:
	}
	return len(p), nil
}

// mtlsServer serves srv at /ws on a loopback httptest server that requires
// a client certificate signed by ca (its own certificate is also signed by
// ca). It returns the server and the lines net/http logs, which name each
// failed TLS handshake. Everything is closed when the test ends.
func mtlsServer(t *testing.T, srv *Server, ca *testCA) (*httptest.Server, <-chan string) {
	t.Helper()
	hm := http.NewServeMux()
	hm.Handle("/ws", srv)
	hs := httptest.NewUnstartedServer(hm)
	hs.TLS = &tls.Config{
		Certificates: []tls.Certificate{ca.issue(t, "127.0.0.1", x509.ExtKeyUsageServerAuth)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.pool,
	}
	logged := make(lineSink, 64)
	hs.Config.ErrorLog = log.New(logged, "", 0)
	hs.StartTLS()
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
		waitConnsDone(t, srv)
	})
	return hs, logged
}

// peerCN returns the common name of the client certificate r came with.
func peerCN(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return ""
	}
	return r.TLS.PeerCertificates[0].Subject.CommonName
}

// identityMux has "whoami", which answers with the common name of the
// caller's verified client certificate, read from the upgrade request.
func identityMux() *Mux {
	mux := NewMux()
	Register(mux, "whoami", func(ctx context.Context, _ struct{}) (map[string]any, error) {
		r := ConnFromContext(ctx).Request()
		verified := r.TLS != nil && len(r.TLS.VerifiedChains) > 0
		// Authenticate's identity, where it returned one: the same name.
		id, _ := ConnFromContext(ctx).Identity().(string)
		return map[string]any{"cn": peerCN(r), "verified": verified, "identity": id}, nil
	})
	return mux
}

// wantRemoteTLSAlert fails the test unless err is the TLS alert the server
// sent when it refused the client's certificate (want is the alert's text,
// such as "tls: certificate required").
//
// With TLS 1.3 the client's handshake is complete before the server has
// checked the client's certificate: the client sends its upgrade request,
// and the server's alert arrives as the answer. The server then closes the
// socket with the request unread, which resets it; if the reset arrives
// before the client wrote its request, the write fails instead (ECONNRESET
// or EPIPE) and the alert is never read. That race is accepted, and logged.
func wantRemoteTLSAlert(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Dial succeeded, want the server's TLS alert %q", want)
	}
	if oe, ok := errors.AsType[*net.OpError](err); ok && oe.Op == "remote error" {
		if oe.Err.Error() != want {
			t.Fatalf("Dial: err = %v, want the TLS alert %q", err, want)
		}
		return
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		t.Logf("Dial: the reset overtook the TLS alert %q: %v", want, err)
		return
	}
	t.Fatalf("Dial: err = %v, want the server's TLS alert %q", err, want)
}

// waitLogged waits for a line of logged containing want.
func waitLogged(ctx context.Context, t *testing.T, logged <-chan string, want string) {
	t.Helper()
	for {
		line := recv(ctx, t, logged, "the server's log line "+want)
		if strings.Contains(line, want) {
			return
		}
	}
}

func TestMutualTLS(t *testing.T) {
	ca := newTestCA(t, "wsrpc test CA")
	alice := ca.issue(t, "alice", x509.ExtKeyUsageClientAuth)

	t.Run("trusted client certificate", func(t *testing.T) {
		ctx := ctxT(t)
		hookSaw := make(chan string, 1)
		srv := mustServer(t, identityMux(), &ServerOptions{
			ConnOptions: ConnOptions{
				Logger: quiet(),
			},
			Authenticate: func(r *http.Request) (any, error) {
				hookSaw <- peerCN(r)
				return peerCN(r), nil
			},
		})
		hs, _ := mtlsServer(t, srv, ca)
		cl := testDial(t, wsURLOf(hs, "/ws"), &DialOptions{
			TLSConfig: &tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{alice}},
		})
		if cn := recv(ctx, t, hookSaw, "the Authenticate hook"); cn != "alice" {
			t.Errorf("Authenticate saw the client certificate's CN %q, want alice", cn)
		}
		got, err := Call[map[string]any](ctx, cl, "whoami", nil)
		if err != nil {
			t.Fatalf("whoami: %v", err)
		}
		if got["cn"] != "alice" || got["verified"] != true || got["identity"] != "alice" {
			t.Errorf("whoami = %v, want cn alice from a verified chain, and the identity Authenticate gave", got)
		}
	})

	t.Run("no client certificate", func(t *testing.T) {
		ctx := ctxT(t)
		var hookCalls atomic.Int32
		srv := mustServer(t, identityMux(), &ServerOptions{
			ConnOptions: ConnOptions{
				Logger: quiet(),
			},
			Authenticate: func(*http.Request) (any, error) { hookCalls.Add(1); return nil, nil },
		})
		hs, logged := mtlsServer(t, srv, ca)
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := tryDial(dctx, t, wsURLOf(hs, "/ws"), &DialOptions{
			TLSConfig: &tls.Config{RootCAs: ca.pool},
			Retry:     RetryOptions{MaxTries: 1},
		})
		wantRemoteTLSAlert(t, err, "tls: certificate required")
		waitLogged(ctx, t, logged, "tls: client didn't provide a certificate")
		if n := hookCalls.Load(); n != 0 {
			t.Errorf("Authenticate ran %d times, want 0: the TLS handshake must refuse the client", n)
		}
	})

	// A certificate failure is final, like 401 and 403: without MaxTries,
	// Dial still tries once, and returns the TLS reason long before its
	// context ends.
	t.Run("no client certificate, not retried", func(t *testing.T) {
		ctx := ctxT(t)
		srv := mustServer(t, identityMux(), &ServerOptions{ConnOptions: ConnOptions{Logger: quiet()}})
		hs, logged := mtlsServer(t, srv, ca)
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := tryDial(dctx, t, wsURLOf(hs, "/ws"), &DialOptions{
			TLSConfig: &tls.Config{RootCAs: ca.pool},
			Retry:     RetryOptions{InitialInterval: 10 * time.Millisecond, MaxInterval: 50 * time.Millisecond},
		})
		if dctx.Err() != nil {
			t.Fatalf("Dial returned only when its context ended: %v", err)
		}
		wantRemoteTLSAlert(t, err, "tls: certificate required")
		waitLogged(ctx, t, logged, "tls: client didn't provide a certificate")
		// One refusal, no second try: nothing more is logged.
		select {
		case line := <-logged:
			if strings.Contains(line, "client didn't provide a certificate") {
				t.Errorf("the server refused a second handshake: Dial retried")
			}
		default:
		}
	})

	// The server's certificate is not trusted: final as well, with the
	// x509 reason.
	t.Run("untrusted server certificate, not retried", func(t *testing.T) {
		ctx := ctxT(t)
		srv := mustServer(t, identityMux(), &ServerOptions{ConnOptions: ConnOptions{Logger: quiet()}})
		hs, _ := mtlsServer(t, srv, ca)
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := tryDial(dctx, t, wsURLOf(hs, "/ws"), &DialOptions{
			Retry: RetryOptions{InitialInterval: 10 * time.Millisecond, MaxInterval: 50 * time.Millisecond},
		})
		if dctx.Err() != nil {
			t.Fatalf("Dial returned only when its context ended: %v", err)
		}
		var ue x509.UnknownAuthorityError
		if !errors.As(err, &ue) {
			t.Fatalf("Dial: err = %v, want x509.UnknownAuthorityError", err)
		}
	})

	// A certificate from another CA. crypto/tls's client sends, of its
	// Certificates, only one issued by a CA the server names in its
	// certificate request: from a CA of another name it sends none, and the
	// server refuses as if there were no certificate. A CA that takes the
	// trusted CA's name gets its certificate sent, and the server's
	// verification refuses it.
	for _, tt := range []struct {
		name, caName, wantAlert, wantLogged string
	}{
		{"client certificate from another CA", "another CA",
			"tls: certificate required", "tls: client didn't provide a certificate"},
		{"client certificate from a CA with the trusted CA's name", "wsrpc test CA",
			"tls: unknown certificate authority", "certificate signed by unknown authority"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxT(t)
			var hookCalls atomic.Int32
			srv := mustServer(t, identityMux(), &ServerOptions{
				ConnOptions: ConnOptions{
					Logger: quiet(),
				},
				Authenticate: func(*http.Request) (any, error) { hookCalls.Add(1); return nil, nil },
			})
			hs, logged := mtlsServer(t, srv, ca)
			stranger := newTestCA(t, tt.caName).issue(t, "alice", x509.ExtKeyUsageClientAuth)
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			_, err := tryDial(dctx, t, wsURLOf(hs, "/ws"), &DialOptions{
				TLSConfig: &tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{stranger}},
				Retry:     RetryOptions{MaxTries: 1},
			})
			wantRemoteTLSAlert(t, err, tt.wantAlert)
			waitLogged(ctx, t, logged, tt.wantLogged)
			if n := hookCalls.Load(); n != 0 {
				t.Errorf("Authenticate ran %d times, want 0: the TLS handshake must refuse the client", n)
			}
		})
	}

	t.Run("Authenticate refuses a valid certificate", func(t *testing.T) {
		ctx := ctxT(t)
		var tries atomic.Int32
		srv := mustServer(t, identityMux(), &ServerOptions{
			ConnOptions: ConnOptions{
				Logger: quiet(),
			},
			Authenticate: func(r *http.Request) (any, error) {
				tries.Add(1)
				cn := peerCN(r)
				if cn != "alice" {
					return nil, &HTTPError{StatusCode: http.StatusForbidden, Message: "unknown client " + cn}
				}
				return cn, nil
			},
		})
		hs, _ := mtlsServer(t, srv, ca)
		mallory := ca.issue(t, "mallory", x509.ExtKeyUsageClientAuth)
		_, err := tryDial(ctx, t, wsURLOf(hs, "/ws"), &DialOptions{
			TLSConfig: &tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{mallory}},
			Retry:     manyTries,
		})
		he, ok := errors.AsType[*HTTPError](err)
		if !ok || he.StatusCode != http.StatusForbidden || he.Message != "unknown client mallory" {
			t.Fatalf("Dial: err = %v, want an *HTTPError 403 \"unknown client mallory\"", err)
		}
		if n := tries.Load(); n != 1 {
			t.Errorf("Authenticate ran %d times, want 1 (a 403 is not retried)", n)
		}
	})
}

// silentConn is what a silentListener saw on one connection: the bytes the
// client sent (decrypted, over TLS) and how reading them ended.
type silentConn struct {
	got []byte
	err error
}

// silentListener accepts TCP connections on 127.0.0.1 and never writes to
// them (with tlsConfig, it completes the TLS handshake first, then writes
// nothing more). Each connection is read until the client closes it, or
// for at most 15 s, and reported on the returned channel. It returns its
// address and the number of connections accepted so far.
func silentListener(t *testing.T, tlsConfig *tls.Config) (string, <-chan silentConn, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan silentConn, 16)
	var accepted atomic.Int32
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(15 * time.Second))
				var r io.Reader = c
				if tlsConfig != nil {
					tc := tls.Server(c, tlsConfig)
					if err := tc.Handshake(); err != nil {
						seen <- silentConn{err: err}
						return
					}
					r = tc
				}
				got, err := io.ReadAll(r)
				seen <- silentConn{got, err}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String(), seen, &accepted
}

func TestDialHandshakeTimeout(t *testing.T) {
	ca := newTestCA(t, "wsrpc test CA")
	serverTLS := &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "127.0.0.1", x509.ExtKeyUsageServerAuth)}}

	tests := []struct {
		name      string
		scheme    string
		listenTLS *tls.Config // the listener completes TLS with this
		// what the listener must have read before the client hung up
		wantSent func(got []byte) bool
		// whether the client's error must be a socket deadline
		// (os.ErrDeadlineExceeded) rather than any timeout
	}{
		{
			// TCP connects, the upgrade request goes out, no answer.
			name: "ws, no HTTP answer", scheme: "ws",
			wantSent: func(got []byte) bool { return bytes.HasPrefix(got, []byte("GET /ws HTTP/1.1\r\n")) },
		},
		{
			// TCP connects, the ClientHello goes out, no ServerHello.
			// crypto/tls's HandshakeContext reports the handshake's own
			// context (context.DeadlineExceeded) or the socket's deadline
			// (os.ErrDeadlineExceeded), whichever fires first: both end at
			// the same instant. Both are net.Errors with Timeout().
			name: "wss, no ServerHello", scheme: "wss",
			wantSent: func(got []byte) bool { return len(got) > 0 && got[0] == 0x16 }, // a TLS handshake record
		},
		{
			// TLS completes, the upgrade request goes out, no answer.
			name: "wss, no HTTP answer", scheme: "wss", listenTLS: serverTLS,
			wantSent: func(got []byte) bool { return bytes.HasPrefix(got, []byte("GET /ws HTTP/1.1\r\n")) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxT(t)
			addr, seen, accepted := silentListener(t, tt.listenTLS)
			const tries = 2
			// The context is far longer than the tries (2 × 200 ms plus one
			// short wait): Dial must give up on its own, with the tries'
			// error.
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			_, err := tryDial(dctx, t, tt.scheme+"://"+addr+"/ws", &DialOptions{
				TLSConfig:        &tls.Config{RootCAs: ca.pool},
				HandshakeTimeout: 200 * time.Millisecond,
				Retry:            RetryOptions{InitialInterval: 10 * time.Millisecond, MaxTries: tries},
			})
			if err == nil {
				t.Fatal("Dial to a server that never answers succeeded")
			}
			t.Logf("Dial: %v", err)
			if dctx.Err() != nil {
				t.Fatalf("Dial returned only when its context ended (%v): HandshakeTimeout did not end the tries", err)
			}
			// The try's own bound, told apart from the caller's deadline.
			if !errors.Is(err, ErrHandshakeTimeout) {
				t.Errorf("Dial: err = %v, want ErrHandshakeTimeout", err)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Dial: err = %v passes for context.DeadlineExceeded while the caller's context is live", err)
			}
			// Each try's socket was closed by the client: the listener read
			// what the client sent, then EOF (io.ReadAll returns nil), not
			// its own 15 s deadline.
			for i := range tries {
				sc := recv(ctx, t, seen, "the listener's connection to end")
				if sc.err != nil {
					t.Errorf("try %d: the listener's read ended with %v, want EOF (the client closing the socket)", i+1, sc.err)
				}
				if !tt.wantSent(sc.got) {
					t.Errorf("try %d: the listener read %q before EOF", i+1, sc.got)
				}
			}
			if n := accepted.Load(); n != tries {
				t.Errorf("the listener accepted %d connections, want %d (MaxTries)", n, tries)
			}
		})
	}
}

func TestServerReadHeaderTimeout(t *testing.T) {
	ctx := ctxT(t)
	srv := mustServer(t, utilMux(), &ServerOptions{ConnOptions: ConnOptions{Logger: quiet()}})
	hm := http.NewServeMux()
	hm.Handle("/ws", srv)
	hs := httptest.NewUnstartedServer(hm)
	// As README and docs/security.md recommend (wsrpc serve sets 10 s).
	hs.Config.ReadHeaderTimeout = 200 * time.Millisecond
	hs.Config.ErrorLog = log.New(io.Discard, "", 0)
	hs.Start()
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
		waitConnsDone(t, srv)
	})
	url := wsURLOf(hs, "/ws")

	// Half an upgrade request: the headers never end.
	c, err := new(net.Dialer).DialContext(ctx, "tcp", hostOf(t, url))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	half := "GET /ws HTTP/1.1\r\nHost: " + hostOf(t, url) + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	if _, err := io.WriteString(c, half); err != nil {
		t.Fatal(err)
	}
	// The server closes the connection without an answer (net/http does
	// not answer a request it timed out reading). The read is bounded by
	// 10 s, far past ReadHeaderTimeout but below the default
	// HandshakeTimeout, so a deadline here would mean the server never
	// closed.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading after half a request: %v, want EOF (the server closing the connection)", err)
	}
	if len(got) != 0 {
		t.Errorf("the server answered half a request with %q, want nothing", got)
	}
	if n := len(srv.Conns()); n != 0 {
		t.Errorf("the server has %d connections, want 0", n)
	}

	// The server still serves complete requests.
	cl := testDial(t, url, nil)
	mustEcho(ctx, t, cl, "after a slow client")
}

// watchedListener wraps each connection it accepts in a writeWatcher and
// hands the watcher over on accepted.
type watchedListener struct {
	net.Listener
	accepted chan *writeWatcher // buffered
}

func (l *watchedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	w := &writeWatcher{Conn: c, failed: make(chan error, 1)}
	select {
	case l.accepted <- w:
	default:
	}
	return w, nil
}

// writeWatcher reports the first failed write on a connection.
type writeWatcher struct {
	net.Conn
	failed chan error // buffered, 1
}

func (w *writeWatcher) Write(p []byte) (int, error) {
	n, err := w.Conn.Write(p)
	if err != nil {
		select {
		case w.failed <- err:
		default:
		}
	}
	return n, err
}

// TestServerHandshakeTimeout: a client that sends a complete upgrade
// request and then never reads stalls the server's write of the 101
// response; ServerOptions.HandshakeTimeout ends that write and the server
// drops the connection. A real socket cannot show this reliably: the
// response is under 200 bytes and always fits in the kernel's buffers
// (Linux clamps SO_RCVBUF and SO_SNDBUF to a few KiB at least), so the
// connection here is a net.Pipe, which has no buffer at all.
func TestServerHandshakeTimeout(t *testing.T) {
	ctx := ctxT(t)
	var connected atomic.Int32
	srv := mustServer(t, utilMux(), &ServerOptions{
		ConnOptions: ConnOptions{
			Logger:    quiet(),
			OnConnect: func(context.Context, *Conn) error { connected.Add(1); return nil },
		},
		HandshakeTimeout: 200 * time.Millisecond,
	})
	hm := http.NewServeMux()
	hm.Handle("/ws", srv)
	hs := &http.Server{Handler: hm, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	// pipeListener (bench_server_test.go) makes a net.Pipe per dial.
	pipes := newPipeListener()
	ln := &watchedListener{Listener: pipes, accepted: make(chan *writeWatcher, 1)}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
		<-served
		waitConnsDone(t, srv)
	})

	c, err := pipes.dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	watch := recv(ctx, t, ln.accepted, "the server to accept the connection")
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatalf("writing the upgrade request: %v", err)
	}

	// The client does not read. The wait is bounded by 5 s, half of
	// DefaultHandshakeTimeout: only the 200 ms option can end the write
	// in time.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	werr := recv(wctx, t, watch.failed, "the server's write of the upgrade response to fail")
	if !errors.Is(werr, os.ErrDeadlineExceeded) {
		t.Fatalf("the server's write of the upgrade response failed with %v, want os.ErrDeadlineExceeded", werr)
	}
	// The server closed the connection, and nothing of the 101 response
	// reached the client.
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading after the server gave up: %v, want EOF (the server closing the connection)", err)
	}
	if len(got) != 0 {
		t.Errorf("the client read %q, want nothing", got)
	}
	if n := connected.Load(); n != 0 {
		t.Errorf("OnConnect ran %d times, want 0", n)
	}
	// It leaves the server's indexes once its goroutine has cleaned up,
	// which may end after the socket's close reached the client.
	pollUntil(t, "the server to drop the connection from its indexes", func() bool { return len(srv.Conns()) == 0 })
}

// TestDialContextEndsKeepsReason: when Dial's context ends while it still
// retries, the error is the context's and still wraps the last try's.
func TestDialContextEndsKeepsReason(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: each try is refused
	dctx, cancel := context.WithTimeout(ctxT(t), 300*time.Millisecond)
	defer cancel()
	_, err = tryDial(dctx, t, "ws://"+addr+"/ws", &DialOptions{
		Retry: RetryOptions{InitialInterval: 10 * time.Millisecond, MaxInterval: 20 * time.Millisecond},
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial: err = %v, want context.DeadlineExceeded", err)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("Dial: err = %v, want it to wrap the last try's ECONNREFUSED", err)
	}
}
