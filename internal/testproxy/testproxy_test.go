package testproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// echoServer runs a loopback TCP server that echoes each connection's
// bytes back, until the test ends; it returns its address.
func echoServer(t *testing.T) string {
	addr, _ := countingEcho(t)
	return addr
}

// roundTrip writes msg on c and reads it back.
func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(time.Minute)) // against a hang
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if string(buf) != msg {
		t.Fatalf("read %q, want %q", buf, msg)
	}
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestProxy(t *testing.T) {
	p := New(t, echoServer(t))
	c := dial(t, p.Addr())
	roundTrip(t, c, "hello")
	if n := p.Accepted(); n != 1 {
		t.Errorf("Accepted() = %d, want 1", n)
	}

	// Frozen: bytes are held and nothing is closed.
	p.Freeze()
	if _, err := io.WriteString(c, "held"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read while frozen: %v, want a timeout", err)
	}
	c.SetReadDeadline(time.Time{})
	p.Thaw()
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "held" {
		t.Fatalf("after Thaw: read %q, %v; want the held bytes", buf, err)
	}

	// Cut: the client sees the connection fail; new ones still work.
	p.CutAll()
	c.SetReadDeadline(time.Now().Add(time.Minute)) // against a hang
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after CutAll: %v, want a reset or EOF", err)
	}
	roundTrip(t, dial(t, p.Addr()), "again")
	if n := p.Accepted(); n != 2 {
		t.Errorf("Accepted() = %d, want 2", n)
	}
}

func TestConnectProxy(t *testing.T) {
	target := echoServer(t)
	p := NewConnectProxy(t)
	p.Rewrite("wsrpc.test:1234", target)

	connect := func(host string) (net.Conn, int) {
		c := dial(t, p.URL().Host)
		c.SetDeadline(time.Now().Add(time.Minute)) // against a hang
		defer c.SetDeadline(time.Time{})
		if _, err := io.WriteString(c, "CONNECT "+host+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return c, resp.StatusCode
	}

	c, status := connect("wsrpc.test:1234")
	if status != http.StatusOK {
		t.Fatalf("CONNECT wsrpc.test:1234: status %d", status)
	}
	roundTrip(t, c, "tunneled")
	if _, status := connect("example.com:80"); status != http.StatusBadGateway {
		t.Errorf("CONNECT to a non-loopback host: status %d, want 502", status)
	}
	got := p.Requests()
	if len(got) != 2 || got[0] != "wsrpc.test:1234" || got[1] != "example.com:80" {
		t.Errorf("Requests() = %q", got)
	}
}
