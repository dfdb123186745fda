//go:build unix

package services

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// roundTrip sends a line to addr and returns the first line of the answer.
func roundTrip(t *testing.T, addr, send string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if send != "" {
		if _, err := io.WriteString(c, send); err != nil {
			t.Fatal(err)
		}
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(line)
}

func TestRedisStopStart(t *testing.T) {
	t.Parallel()
	s := Redis(t)
	if got := roundTrip(t, s.Addr, "PING\r\n"); got != "+PONG" {
		t.Fatalf("PING: %q", got)
	}
	s.Stop()
	if c, err := net.Dial("tcp", s.Addr); err == nil {
		c.Close()
		t.Fatal("redis still accepts connections after Stop")
	}
	s.Start()
	if got := roundTrip(t, s.Addr, "PING\r\n"); got != "+PONG" {
		t.Fatalf("PING after Start: %q", got)
	}
	s.Kill()
	s.Start()
	if got := roundTrip(t, s.Addr, "PING\r\n"); got != "+PONG" {
		t.Fatalf("PING after Kill and Start: %q", got)
	}
}

func TestNATS(t *testing.T) {
	t.Parallel()
	s := NATS(t)
	if got := roundTrip(t, s.Addr, ""); !strings.HasPrefix(got, "INFO ") {
		t.Fatalf("greeting: %q", got)
	}
}

func TestPostgresKillStart(t *testing.T) {
	t.Parallel()
	s := Postgres(t)
	s.Kill()
	if c, err := net.Dial("tcp", s.Addr); err == nil {
		c.Close()
		t.Fatal("postgres still accepts connections after Kill")
	}
	s.Start()
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestNginxProxy(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream saw %s\n", r.URL.Path)
	}))
	defer up.Close()
	s := NginxProxy(t, strings.TrimPrefix(up.URL, "http://"))
	resp, err := http.Get(s.URL("http", "/x"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := strings.TrimSpace(string(body)); got != "upstream saw /x" {
		t.Fatalf("through nginx: %q", got)
	}
	http.DefaultClient.CloseIdleConnections()
}

// TestFreePortReserved: a port FreePort gave is held against every other
// open of its lock file (another test binary's FreePort opens the file on
// its own, as this check does) until the test that asked for it ends.
func TestFreePortReserved(t *testing.T) {
	var p int
	t.Run("holder", func(t *testing.T) {
		p = FreePort(t)
		if _, ok := reservePort(p); ok {
			t.Fatalf("port %d was reserved again while its test runs", p)
		}
	})
	release, ok := reservePort(p)
	if !ok {
		t.Fatalf("port %d still reserved after its test ended", p)
	}
	release()
}
