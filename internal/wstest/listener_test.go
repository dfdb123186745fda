package wstest

import (
	"context"
	"errors"
	"net"
	"testing"
	"testing/synctest"
)

// TestListenerDial: a dial returns the client's end, Accept the server's,
// with the addresses of a loopback connection: one host for every client,
// a port per dial.
func TestListenerDial(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := NewListener()
		defer l.Close()
		for i, want := range []string{"client:1", "client:2"} {
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := l.Accept()
				if err != nil {
					t.Errorf("Accept: %v", err)
				}
				accepted <- c
			}()
			client, err := l.DialContext(t.Context(), "tcp", "pipe:80")
			if err != nil {
				t.Fatalf("dial %d: %v", i+1, err)
			}
			server := <-accepted
			if got := server.RemoteAddr().String(); got != want {
				t.Errorf("dial %d: the server sees %s, want %s", i+1, got, want)
			}
			if got := client.RemoteAddr().String(); got != "pipe:80" {
				t.Errorf("dial %d: the client's RemoteAddr is %s, want pipe:80", i+1, got)
			}
			client.Write([]byte("hi"))
			buf := make([]byte, 2)
			if n, err := server.Read(buf); string(buf[:n]) != "hi" || err != nil {
				t.Errorf("dial %d: the server read %q, %v", i+1, buf[:n], err)
			}
			client.Close()
			server.Close()
		}
	})
}

// TestListenerRefuses: a dial to another host (a proxy, say), to a closed
// listener, or waiting when it closes, fails with ErrRefused; one whose
// context ends while it waits fails with the context's error.
func TestListenerRefuses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := NewListener()
		if _, err := l.DialContext(t.Context(), "tcp", "proxy.example:3128"); !errors.Is(err, ErrRefused) {
			t.Errorf("dial to another host: %v, want ErrRefused", err)
		}

		ctx, cancel := context.WithCancel(t.Context())
		canceled := make(chan error, 1)
		go func() {
			_, err := l.DialContext(ctx, "tcp", "pipe:80")
			canceled <- err
		}()
		synctest.Wait()
		cancel()
		if err := <-canceled; !errors.Is(err, context.Canceled) {
			t.Errorf("dial canceled while it waited: %v, want context.Canceled", err)
		}

		waiting := make(chan error, 1)
		go func() {
			_, err := l.DialContext(t.Context(), "tcp", "pipe:80")
			waiting <- err
		}()
		synctest.Wait()
		l.Close()
		if err := <-waiting; !errors.Is(err, ErrRefused) {
			t.Errorf("dial waiting when the listener closed: %v, want ErrRefused", err)
		}
		if _, err := l.DialContext(t.Context(), "tcp", "pipe:80"); !errors.Is(err, ErrRefused) {
			t.Errorf("dial to a closed listener: %v, want ErrRefused", err)
		}
		if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept on a closed listener: %v, want net.ErrClosed", err)
		}
	})
}
