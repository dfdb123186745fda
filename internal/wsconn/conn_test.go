package wsconn

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestWriteMasked: a client's data frame written by WriteMasked is one
// final, masked frame with the shortest length encoding, held or not,
// whose payload unmasks to what was sent.
func TestWriteMasked(t *testing.T) {
	cc, sc := tcpPair(t)
	c := New(cc)
	r := bufio.NewReader(sc)

	for _, n := range []int{0, 1, 7, 125, 126, 127, 65535, 65536, 70000, maxBatch + 10} {
		for _, held := range []bool{false, true} {
			want := payload(fmt.Sprintf("<%d/%v>", n, held), n)
			p := bytes.Clone(want)
			done := make(chan error, 1)
			go func() {
				if held {
					c.Hold()
				}
				err := c.WriteMasked(websocket.TextMessage, p)
				if held {
					if rerr := c.Release(); err == nil {
						err = rerr
					}
				}
				done <- err
			}()
			var h [2]byte
			mustRead(t, r, h[:])
			if h[0] != 0x80|websocket.TextMessage || h[1]&0x80 == 0 {
				t.Fatalf("n=%d held=%v: header %#x %#x, want FIN+text and the mask bit", n, held, h[0], h[1])
			}
			length := payloadLength(t, r, h[1]&0x7f, n)
			var key [4]byte
			mustRead(t, r, key[:])
			got := make([]byte, length)
			mustRead(t, r, got)
			for i := range got {
				got[i] ^= key[i%4]
			}
			if err := <-done; err != nil {
				t.Fatalf("n=%d held=%v: %v", n, held, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("n=%d held=%v: payload differs", n, held)
			}
		}
	}
}

// TestWriteUnmasked: a server's data frame written by WriteUnmasked is one
// final frame without the mask bit, with the shortest length encoding,
// held or not (large ones kept by reference), carrying what was sent.
func TestWriteUnmasked(t *testing.T) {
	cc, sc := tcpPair(t)
	c := New(sc)
	r := bufio.NewReader(cc)

	for _, n := range []int{0, 1, 125, 126, minKeep, 65535, 65536, maxCopy + 1, maxBatch + 10} {
		for _, held := range []bool{false, true} {
			want := payload(fmt.Sprintf("<%d/%v>", n, held), n)
			p := bytes.Clone(want)
			done := make(chan error, 1)
			go func() {
				if held {
					c.Hold()
				}
				err := c.WriteUnmasked(websocket.BinaryMessage, p)
				if held {
					if rerr := c.Release(); err == nil {
						err = rerr
					}
				}
				done <- err
			}()
			var h [2]byte
			mustRead(t, r, h[:])
			if h[0] != 0x80|websocket.BinaryMessage || h[1]&0x80 != 0 {
				t.Fatalf("n=%d held=%v: header %#x %#x, want FIN+binary and no mask bit", n, held, h[0], h[1])
			}
			length := payloadLength(t, r, h[1], n)
			got := make([]byte, length)
			mustRead(t, r, got)
			if err := <-done; err != nil {
				t.Fatalf("n=%d held=%v: %v", n, held, err)
			}
			if !bytes.Equal(got, want) || !bytes.Equal(p, want) {
				t.Fatalf("n=%d held=%v: payload differs, or was changed", n, held)
			}
		}
	}
}

// payloadLength reads the extended length that the 7-bit length code
// announces, if any, and returns the payload's length; it fails the test
// unless the code is the shortest encoding of n, the length sent.
func payloadLength(t *testing.T, r io.Reader, code byte, n int) int {
	t.Helper()
	length := int(code)
	switch {
	case n <= 125 && length != n, n > 125 && n <= 0xffff && length != 126, n > 0xffff && length != 127:
		t.Fatalf("n=%d: length code %d", n, length)
	case length == 126:
		var l [2]byte
		mustRead(t, r, l[:])
		length = int(binary.BigEndian.Uint16(l[:]))
	case length == 127:
		var l [8]byte
		mustRead(t, r, l[:])
		length = int(binary.BigEndian.Uint64(l[:]))
	}
	return length
}

func mustRead(t *testing.T, r io.Reader, p []byte) {
	t.Helper()
	if _, err := io.ReadFull(r, p); err != nil {
		t.Fatal(err)
	}
}

// TestMaskBytes: maskBytes, eight bytes at a time, is the byte-wise XOR
// with the key's bytes in little-endian order, at every length and
// alignment.
func TestMaskBytes(t *testing.T) {
	for _, key := range []uint32{0, 1, 0xdeadbeef, 0x01020304, 0xffffffff} {
		var k [4]byte
		binary.LittleEndian.PutUint32(k[:], key)
		for n := range 40 {
			p := payload("m", n)
			want := bytes.Clone(p)
			for i := range want {
				want[i] ^= k[i%4]
			}
			maskBytes(p, key)
			if !bytes.Equal(p, want) {
				t.Fatalf("key %#x, %d bytes: % x, want % x", key, n, p, want)
			}
		}
	}
}

// TestBatchedFramesReadBack: frames of many sizes, written in batches
// (Hold, Keep, Release) by a server through gorilla's WriteMessage and by
// a client with WriteMasked (through gorilla over TLS), so that one batch
// mixes copied and referenced payloads and fills up and flushes mid-way,
// while another goroutine pings: a gorilla peer reads every payload back
// intact, in order, and every ping, over plain TCP and over TLS (where
// nothing is kept by reference).
func TestBatchedFramesReadBack(t *testing.T) {
	sizes := []int{10, minKeep - 1, minKeep, minKeep + 1, 16 << 10, 100 << 10, maxBatch - 200, maxBatch + 1}
	const rounds, pings = 3, 20
	for _, useTLS := range []bool{false, true} {
		for _, writer := range []string{"server", "client"} {
			t.Run(fmt.Sprintf("tls=%v/%s", useTLS, writer), func(t *testing.T) {
				cl, sv := newPair(t, pairOpts{tls: useTLS, upgrader: websocket.Upgrader{WriteBufferSize: serverWriteBuffer}})
				ws, peer := sv, cl
				if writer == "client" {
					ws, peer = cl, sv
				}
				c, direct := Of(ws)
				if c == nil {
					t.Fatal("Of found no Conn under the writer's websocket.Conn")
				}
				direct = direct && writer == "client"
				c.Own(time.Minute)

				var want [][]byte
				for r := range rounds {
					for i, n := range sizes {
						want = append(want, payload(fmt.Sprintf("<%d/%d>", r, i), n))
					}
				}
				var got [][]byte
				var pinged int
				var readErr error
				var wg sync.WaitGroup
				wg.Go(func() {
					peer.SetPingHandler(func(string) error { pinged++; return nil })
					for len(got) < len(want) {
						_, p, err := peer.ReadMessage()
						if err != nil {
							readErr = err
							return
						}
						got = append(got, p)
					}
					// The pings sent after the last payload, and the end.
					_, p, err := peer.ReadMessage()
					if err != nil || string(p) != "end" {
						readErr = fmt.Errorf("the last message: %q, %v", p, err)
					}
				})
				pingDone := make(chan error, 1)
				go func() {
					for i := range pings {
						if err := ws.WriteControl(websocket.PingMessage, fmt.Appendf(nil, "ping %d", i), time.Now().Add(time.Minute)); err != nil {
							pingDone <- err
							return
						}
					}
					pingDone <- nil
				}()
				for r := range rounds {
					c.Hold()
					for i := range sizes {
						p := bytes.Clone(want[r*len(sizes)+i]) // WriteMasked masks it in place
						c.Keep(p)
						var err error
						if direct {
							err = c.WriteMasked(websocket.BinaryMessage, p)
						} else {
							err = ws.WriteMessage(websocket.BinaryMessage, p)
						}
						if err != nil {
							t.Fatalf("round %d, %d bytes: %v", r, sizes[i], err)
						}
					}
					if err := c.Release(); err != nil {
						t.Fatal(err)
					}
				}
				if err := <-pingDone; err != nil {
					t.Fatalf("ping: %v", err)
				}
				if err := ws.WriteMessage(websocket.TextMessage, []byte("end")); err != nil {
					t.Fatal(err)
				}
				wg.Wait()
				if readErr != nil {
					t.Fatalf("the peer's read: %v", readErr)
				}
				for i := range want {
					if !bytes.Equal(got[i], want[i]) {
						t.Fatalf("message %d: got %d bytes (%.12q…), want %d (%.12q…)", i, len(got[i]), got[i], len(want[i]), want[i])
					}
				}
				if pinged != pings {
					t.Fatalf("the peer read %d pings, want %d", pinged, pings)
				}
			})
		}
	}
}

// TestOwnedDeadline: before Own, the write deadline set through the Conn
// applies, as on any socket; once owned, a deadline set through
// SetWriteDeadline or SetDeadline, gorilla's or a control frame's, never
// reaches the socket, and each write gets the owned timeout (or none).
func TestOwnedDeadline(t *testing.T) {
	past := time.Now().Add(-time.Second)

	t.Run("before Own", func(t *testing.T) {
		cc, _ := tcpPair(t)
		c := New(cc)
		c.SetWriteDeadline(past)
		if _, err := c.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("a write past the deadline set before Own: %v, want a deadline error", err)
		}
	})

	t.Run("after Own", func(t *testing.T) {
		cc, _ := tcpPair(t)
		c := New(cc)
		c.Own(time.Minute)
		c.SetWriteDeadline(past)
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatalf("SetWriteDeadline after Own reached the socket: %v", err)
		}
		c.SetDeadline(past)
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatalf("SetDeadline after Own reached the socket's write deadline: %v", err)
		}
	})

	// A socket handed over with a write deadline on it (a dialer's, a
	// server's that does not clear its own on hijack as net/http does):
	// gorilla's SetDeadline(zero) clears it before Own, and Own(0)
	// clears it too. The Conn used to take a new socket for one without
	// a deadline, and skip both.
	for _, clear := range []string{"SetDeadline", "Own"} {
		t.Run("a deadline before New, cleared by "+clear, func(t *testing.T) {
			cc, _ := tcpPair(t)
			cc.SetWriteDeadline(past)
			c := New(cc)
			if clear == "SetDeadline" {
				c.SetDeadline(time.Time{})
			} else {
				c.Own(0)
			}
			if _, err := c.Write([]byte("x")); err != nil {
				t.Fatalf("the socket kept the deadline it had before New: %v", err)
			}
		})
	}

	// The keep-alive defect: a pong's deadline (a second away, here half
	// a second: long enough for the pong's write to make it on a loaded
	// machine, which a millisecond was not) stayed on the socket and cut
	// the client's next data frame, which gorilla never sees.
	t.Run("a control frame's deadline does not stay", func(t *testing.T) {
		cl, sv := newPair(t, pairOpts{})
		c, direct := Of(cl)
		if c == nil || !direct {
			t.Fatalf("Of(client) = %p, %v; want the client's Conn, direct", c, direct)
		}
		c.Own(time.Minute)
		d := time.Now().Add(500 * time.Millisecond)
		if err := cl.WriteControl(websocket.PongMessage, nil, d); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(d) + time.Millisecond) // not a timing assertion: the pong's deadline is now past
		want := payload("after the pong", 100)
		if err := c.WriteMasked(websocket.TextMessage, bytes.Clone(want)); err != nil {
			t.Fatalf("the data frame after a pong: %v (the pong's deadline stayed on the socket)", err)
		}
		if _, got, err := sv.ReadMessage(); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("the server read %q, %v", got, err)
		}
	})

	// What the socket sees: only the owned deadline, one timeout from the
	// start of a write, never the one given to SetWriteDeadline.
	t.Run("socket", func(t *testing.T) {
		cc, _ := tcpPair(t)
		rec := record(cc)
		c := New(rec)
		const timeout = time.Hour
		start := time.Now()
		c.Own(timeout)
		for i := range 3 {
			c.SetWriteDeadline(time.Now().Add(time.Second))
			if i == 1 {
				c.Hold()
				c.Write([]byte("held"))
				c.Release()
			} else if _, err := c.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		ev := rec.take()
		armed := 0
		for _, e := range ev {
			switch e.op {
			case "SetWriteDeadline":
				armed++
				if e.t.Before(start.Add(timeout)) {
					t.Fatalf("the socket got a write deadline %v before the owned one (start+%v): %s", e.t.Sub(start), timeout, ops(ev))
				}
			case "SetDeadline", "SetReadDeadline":
				t.Fatalf("the Conn set the socket's read deadline: %s", ops(ev))
			}
		}
		if armed == 0 || ev[0].op != "SetWriteDeadline" {
			t.Fatalf("the first write went out without the owned deadline: %s", ops(ev))
		}
	})

	t.Run("Own(0) clears", func(t *testing.T) {
		cc, _ := tcpPair(t)
		rec := record(cc)
		c := New(rec)
		c.SetWriteDeadline(time.Now().Add(time.Minute))
		c.Write([]byte("handshake"))
		c.Own(0)
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write([]byte("x"))
		ev := rec.take()
		if last := ev[len(ev)-2]; last.op != "SetWriteDeadline" || !last.t.IsZero() {
			t.Fatalf("after Own(0) the socket's deadline was not cleared before the write: %s", ops(ev))
		}
	})
}

// TestOf: Of finds the Conn under a websocket.Conn through TLS, and
// reports a direct one; a socket of another origin has none.
func TestOf(t *testing.T) {
	cl, _ := newPair(t, pairOpts{wrapClient: func(c net.Conn) net.Conn { return c }})
	if c, direct := Of(cl); c != nil || direct {
		t.Fatalf("Of(a websocket.Conn over a plain socket) = %p, %v; want nil, false", c, direct)
	}
}
