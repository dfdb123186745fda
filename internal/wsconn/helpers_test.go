package wsconn

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// serverWriteBuffer is the write buffer of wsrpc's Upgrader (server.go):
// payloads larger than it are written past it (assumption B).
const serverWriteBuffer = 128

// tcpPair returns both ends of a TCP connection on 127.0.0.1.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, ok := <-accepted
	if !ok {
		cc.Close()
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { cc.Close(); sc.Close() })
	return cc.(*net.TCPConn), sc.(*net.TCPConn)
}

// pairOpts says how newPair connects a gorilla client and server.
type pairOpts struct {
	tls bool
	// wrapServer wraps the hijacked socket for gorilla's Upgrader; nil:
	// the Upgrader gets a Hijacker, as wsrpc's Server does.
	wrapServer func(net.Conn) net.Conn
	// wrapClient wraps the dialed socket for gorilla's Dialer, as
	// NetDialContext; nil: New, as wsrpc's Client does.
	wrapClient func(net.Conn) net.Conn
	upgrader   websocket.Upgrader
	dialer     websocket.Dialer
	ctx        context.Context // Dial's; nil: the test's
}

// newPair connects a gorilla client to a gorilla server over 127.0.0.1,
// through the wrappers of o, and returns both ends, closed at cleanup.
func newPair(t *testing.T, o pairOpts) (client, server *websocket.Conn) {
	t.Helper()
	servers := make(chan *websocket.Conn, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var hw http.ResponseWriter = &Hijacker{ResponseWriter: w}
		if o.wrapServer != nil {
			hw = &wrapHijacker{ResponseWriter: w, wrap: o.wrapServer}
		}
		ws, err := o.upgrader.Upgrade(hw, r, nil)
		if err != nil {
			t.Errorf("upgrade: %v", err)
			close(servers)
			return
		}
		servers <- ws
	})
	var hs *httptest.Server
	if o.tls {
		hs = httptest.NewTLSServer(h)
	} else {
		hs = httptest.NewServer(h)
	}
	defer hs.Close() // the hijacked connection outlives it
	d := o.dialer
	if o.tls {
		pool := x509.NewCertPool()
		pool.AddCert(hs.Certificate())
		d.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	d.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := new(net.Dialer).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if o.wrapClient != nil {
			return o.wrapClient(c), nil
		}
		return New(c), nil
	}
	ctx := o.ctx
	if ctx == nil {
		ctx = t.Context()
	}
	u := "ws" + strings.TrimPrefix(hs.URL, "http")
	cl, _, err := d.DialContext(ctx, u, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	sv, ok := <-servers
	if !ok {
		cl.Close()
		t.FailNow()
	}
	t.Cleanup(func() { cl.Close(); sv.Close() })
	return cl, sv
}

// wrapHijacker hijacks the request's connection and wraps it.
type wrapHijacker struct {
	http.ResponseWriter
	wrap func(net.Conn) net.Conn
}

func (h *wrapHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	return h.wrap(c), brw, nil
}

// event is one call on a recorder.
type event struct {
	op   string    // "Write", "SetDeadline", "SetWriteDeadline" or "SetReadDeadline"
	p    []byte    // Write: the slice given, for its identity
	data []byte    // Write: a copy of what it held then
	t    time.Time // the deadlines: the time given
}

// recorder is a net.Conn that records the calls made on it. It hides the
// socket's type: a Conn over it neither reads ahead nor keeps payloads by
// reference.
type recorder struct {
	net.Conn
	mu     sync.Mutex
	events []event
}

func record(c net.Conn) *recorder { return &recorder{Conn: c} }

func (r *recorder) add(e event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// take returns the events recorded since the last take.
func (r *recorder) take() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := r.events
	r.events = nil
	return ev
}

func (r *recorder) Write(p []byte) (int, error) {
	r.add(event{op: "Write", p: p, data: bytes.Clone(p)})
	return r.Conn.Write(p)
}

func (r *recorder) SetDeadline(t time.Time) error {
	r.add(event{op: "SetDeadline", t: t})
	return r.Conn.SetDeadline(t)
}

func (r *recorder) SetWriteDeadline(t time.Time) error {
	r.add(event{op: "SetWriteDeadline", t: t})
	return r.Conn.SetWriteDeadline(t)
}

func (r *recorder) SetReadDeadline(t time.Time) error {
	r.add(event{op: "SetReadDeadline", t: t})
	return r.Conn.SetReadDeadline(t)
}

// writes returns the Write events of ev.
func writes(ev []event) []event {
	var w []event
	for _, e := range ev {
		if e.op == "Write" {
			w = append(w, e)
		}
	}
	return w
}

// ops lists ev's operations, for failure messages.
func ops(ev []event) string {
	var s []string
	for _, e := range ev {
		switch e.op {
		case "Write":
			s = append(s, "Write("+strconv.Itoa(len(e.p))+" bytes)")
		default:
			if e.t.IsZero() {
				s = append(s, e.op+"(zero)")
			} else {
				s = append(s, e.op+"(in "+time.Until(e.t).Round(time.Millisecond).String()+")")
			}
		}
	}
	return strings.Join(s, ", ")
}

// payload returns n bytes whose content depends on tag and position: a
// mix-up of two payloads, or a torn one, cannot pass for either.
func payload(tag string, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = 'a' + byte((i+len(tag)*7)%26)
	}
	copy(p, tag)
	if n > len(tag) {
		copy(p[n-len(tag):], tag)
	}
	return p
}
