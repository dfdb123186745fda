package wstest

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// TestPipeBuffersWrites: both ends write before either reads, as two
// WebSocket readers answering each other's pings do; a net.Pipe would
// deadlock here.
func TestPipeBuffersWrites(t *testing.T) {
	a, b := Pipe()
	defer a.Close()
	defer b.Close()
	for _, w := range []*Conn{a, b} {
		if n, err := w.Write([]byte("ping")); n != 4 || err != nil {
			t.Fatalf("Write = %d, %v; want 4, nil without a reader", n, err)
		}
	}
	for _, r := range []*Conn{a, b} {
		buf := make([]byte, 8)
		if n, err := r.Read(buf); string(buf[:n]) != "ping" || err != nil {
			t.Errorf("Read = %q, %v; want \"ping\"", buf[:n], err)
		}
	}
}

// TestPipeWriteWaitsWhileFull: a Write larger than the buffer waits until
// the peer reads, and a write deadline ends the wait at exactly the
// deadline, with what fit.
func TestPipeWriteWaitsWhileFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := Pipe()
		defer a.Close()
		defer b.Close()
		msg := bytes.Repeat([]byte("x"), BufferSize+10)

		done := make(chan error, 1)
		go func() {
			_, err := a.Write(msg)
			done <- err
		}()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("a write larger than the buffer returned (%v) before the peer read", err)
		default:
		}
		got, err := io.ReadAll(io.LimitReader(b, int64(len(msg))))
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("read %d bytes, %v; want the %d written", len(got), err, len(msg))
		}
		if err := <-done; err != nil {
			t.Fatalf("Write: %v", err)
		}

		const timeout = 3 * time.Second
		start := time.Now()
		a.SetWriteDeadline(start.Add(timeout))
		n, err := a.Write(msg)
		if took := time.Since(start); took != timeout {
			t.Errorf("the write to a peer that does not read failed after %v, want %v", took, timeout)
		}
		if n != BufferSize || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("Write = %d, %v; want %d, os.ErrDeadlineExceeded", n, err, BufferSize)
		}
		if ne, ok := errors.AsType[net.Error](err); !ok || !ne.Timeout() {
			t.Errorf("Write error %v is no net.Error timeout", err)
		}
	})
}

// TestPipeReadDeadline: a deadline ends a waiting Read at exactly the
// deadline; one moved into the past, as net/http does to abort its
// background read, wakes it at once; clearing it lets Reads wait again.
func TestPipeReadDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := Pipe()
		defer a.Close()
		defer b.Close()
		buf := make([]byte, 8)

		start := time.Now()
		b.SetReadDeadline(start.Add(time.Second))
		if _, err := b.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) != time.Second {
			t.Errorf("Read after %v: %v; want os.ErrDeadlineExceeded after 1s", time.Since(start), err)
		}

		b.SetReadDeadline(time.Time{})
		done := make(chan error, 1)
		go func() {
			_, err := b.Read(buf)
			done <- err
		}()
		time.Sleep(time.Minute)
		synctest.Wait()
		if len(done) != 0 {
			t.Fatalf("Read without a deadline returned: %v", <-done)
		}
		b.SetReadDeadline(time.Unix(1, 0))
		if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("Read woken by a past deadline: %v, want os.ErrDeadlineExceeded", err)
		}

		b.SetReadDeadline(time.Time{})
		a.Write([]byte("late"))
		if n, err := b.Read(buf); string(buf[:n]) != "late" || err != nil {
			t.Errorf("Read after the deadline was cleared = %q, %v", buf[:n], err)
		}
	})
}

// TestPipeClose: after Close, the closed end's own calls fail with
// net.ErrClosed; the peer reads what was written before, then io.EOF, and
// its writes fail.
func TestPipeClose(t *testing.T) {
	a, b := Pipe()
	defer b.Close()
	a.Write([]byte("bye"))
	a.Close()
	a.Close()
	if _, err := a.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read on the closed end: %v, want net.ErrClosed", err)
	}
	if _, err := a.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write on the closed end: %v, want net.ErrClosed", err)
	}
	if got, err := io.ReadAll(b); string(got) != "bye" || err != nil {
		t.Errorf("the peer read %q, %v; want \"bye\" then io.EOF", got, err)
	}
	if _, err := b.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("Write to a closed peer: %v, want io.ErrClosedPipe", err)
	}
}

// TestPipeFreeze: a frozen link delivers nothing, not even a close, until
// it thaws; then everything arrives.
func TestPipeFreeze(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := Pipe()
		defer b.Close()
		a.Freeze()
		a.Write([]byte("held"))
		a.Close()
		if _, err := b.Write([]byte("x")); err != nil {
			t.Errorf("Write over a frozen link to a closed peer: %v, want nil (nothing is told)", err)
		}
		got := make(chan []byte, 1)
		go func() {
			data, _ := io.ReadAll(b)
			got <- data
		}()
		time.Sleep(time.Hour)
		synctest.Wait()
		if len(got) != 0 {
			t.Fatalf("read %q over a frozen link", <-got)
		}
		b.Thaw()
		if data := <-got; string(data) != "held" {
			t.Errorf("after the thaw the peer read %q, want \"held\" then io.EOF", data)
		}
	})
}

// TestPipeHasNoFileDescriptor: wsrpc reads ahead through a socket's
// syscall.RawConn (internal/wsconn), which a pipe must not offer: there
// the read-ahead must not engage, and reads go through Conn.Read.
func TestPipeHasNoFileDescriptor(t *testing.T) {
	a, b := Pipe()
	defer a.Close()
	defer b.Close()
	if _, ok := net.Conn(a).(syscall.Conn); ok {
		t.Error("a pipe's Conn is a syscall.Conn")
	}
}
