// Package services starts the real servers that tests need (redis-server,
// nats-server, PostgreSQL, nginx) as private processes on free loopback
// ports, each in a temporary directory of its test, and stops them when
// the test ends. Nothing depends on a system service or a standard port,
// so two test runs never share a server.
//
// A missing binary fails the test when the environment variable CI is set
// (CI installs every one of them), and skips it elsewhere, naming the
// Debian package to install.
package services

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is a server process that a test started. Stop and Start let a
// test take it away and bring it back on the same address; Kill ends it
// without letting it shut down cleanly.
type Server struct {
	// Name is the program's name, for messages.
	Name string
	// Addr is the host:port it listens on, on 127.0.0.1.
	Addr string
	// Port is Addr's port.
	Port int
	// Dir is the server's own temporary directory.
	Dir string

	t     testing.TB
	start func() (proc, error)
	mu    sync.Mutex
	p     proc // nil while stopped
}

// proc is one run of a server: stop ends it cleanly, kill at once.
type proc interface {
	stop() error
	kill() error
}

// URL returns scheme://Addr plus path, the address a client dials.
func (s *Server) URL(scheme, path string) string { return scheme + "://" + s.Addr + path }

// Start starts the server again after Stop or Kill, on the same port, and
// returns once it accepts connections. It fails the test if it cannot.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p != nil {
		return
	}
	p, err := s.start()
	if err != nil {
		s.t.Fatalf("services: starting %s on %s: %v", s.Name, s.Addr, err)
	}
	s.p = p
}

// Stop stops the server cleanly and waits until it has exited. Clients see
// their connections closed.
func (s *Server) Stop() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return
	}
	if err := s.p.stop(); err != nil {
		s.t.Errorf("services: stopping %s: %v", s.Name, err)
	}
	s.p = nil
}

// Kill ends the server at once (SIGKILL), as a crash would, and waits
// until it has exited.
func (s *Server) Kill() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return
	}
	if err := s.p.kill(); err != nil {
		s.t.Errorf("services: killing %s: %v", s.Name, err)
	}
	s.p = nil
}

// Need returns the path of the program bin, which Debian's package pkg
// installs. If it is missing it fails the test under CI and skips it
// elsewhere.
func Need(t testing.TB, bin, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(bin)
	if err == nil {
		return path
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		if p := filepath.Join(dir, bin); isExec(p) {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("services: %s not found: CI must install the Debian package %s", bin, pkg)
	}
	t.Skipf("services: %s not found: install the Debian package %s to run this test", bin, pkg)
	return ""
}

func isExec(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listened on a
// moment ago and that no other caller holds: not this process, which never
// returns a port twice, and not another test binary of the same `go test
// ./...`, which holds the ports it was given (by a lock on a file named
// after the port, see reservePort) until the test that asked ends. It is
// drawn at random below the kernel's ephemeral range (32768 up on Linux),
// from which listen(":0") and the source ports of connections are taken,
// so that no test's socket takes it before the service binds it (a port
// from listen(":0"), closed and handed over, could be handed out again at
// once, and a service that lost it would be confused with the one that
// won). A test that stops a service and starts it again on its port keeps
// the port to itself meanwhile. It falls back to listen(":0") if no such
// port is free.
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 200 {
		p := minPort + rand.IntN(maxPort-minPort)
		if portsGiven[p] {
			continue
		}
		release, ok := reservePort(p)
		if !ok {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			release()
			continue
		}
		l.Close()
		portsGiven[p] = true
		t.Cleanup(release)
		return p
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("services: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// The ports FreePort draws from: above the well-known and common service
// ports, below Linux's ephemeral range.
const minPort, maxPort = 20000, 32768

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// serve makes a Server for a program started by start on a new port, starts
// it, and stops it (killing it if need be) when the test ends.
func serve(t testing.TB, name string, start func(s *Server) (proc, error)) *Server {
	t.Helper()
	s := &Server{Name: name, t: t, Dir: t.TempDir()}
	s.Port = FreePort(t)
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
	s.start = func() (proc, error) { return start(s) }
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.p != nil {
			_ = s.p.kill()
			s.p = nil
		}
	})
	s.Start()
	return s
}

// waitListening waits until addr accepts TCP connections, or exited is
// closed (the process ended: its log says why), or 20 s passed.
func waitListening(addr string, exited <-chan struct{}, logPath string) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("it exited: %s", tail(logPath))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening after 20 s: %s", tail(logPath))
		}
	}
}

// tail returns the end of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}
