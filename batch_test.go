package wsrpc

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestLargeFramesBatched sends frames of many sizes at once both ways, so
// that one batch of writes mixes copied and referenced payloads, fills up
// and flushes mid-way, and interleaves with keep-alive pings: every call
// gets its own payload back intact, over plain TCP and over TLS (where
// nothing may be kept by reference).
func TestLargeFramesBatched(t *testing.T) {
	sizes := []int{10, minKeep - 1, minKeep, minKeep + 1, 16 << 10, 100 << 10, maxBatch - 200, maxBatch + 1}
	for _, useTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", useTLS), func(t *testing.T) {
			ctx := ctxT(t)
			srv := mustServer(t, echoMux(), &ServerOptions{ConnOptions: ConnOptions{Logger: quiet(), KeepAlive: KeepAlive{Interval: 5 * time.Millisecond, Timeout: 10 * time.Second}}})
			hs := wsHTTPServer(t, srv, useTLS, nil)
			opts := &DialOptions{Methods: echoMux(), ConnOptions: ConnOptions{KeepAlive: KeepAlive{Interval: 5 * time.Millisecond, Timeout: 10 * time.Second}}}
			if useTLS {
				pool := x509.NewCertPool()
				pool.AddCert(hs.Certificate())
				opts.TLSConfig = &tls.Config{RootCAs: pool}
			}
			cl := testDial(t, wsURLOf(hs, "/ws"), opts)
			sc := serverConn(t, srv)
			var wg sync.WaitGroup
			for w := range 4 {
				for _, c := range []Caller{cl, sc} {
					wg.Go(func() {
						for i, size := range sizes {
							// Distinct content per call: a mix-up of two
							// payloads, or a torn one, cannot pass.
							tag := fmt.Sprintf("<%d/%d/%T>", w, i, c)
							text := tag + strings.Repeat(string(rune('a'+(w+i)%26)), size) + tag
							got, err := Call[string](ctx, c, "echo", textArgs{text})
							if err != nil {
								t.Errorf("%s size %d: %v", tag, size, err)
								return
							}
							if got != text {
								t.Errorf("%s size %d: got %d bytes, not the payload sent", tag, size, len(got))
								return
							}
						}
					})
				}
			}
			wg.Wait()
		})
	}
}

// TestWriteMasked: a client's data frame written by batchConn.writeMasked
// is one final, masked frame with the shortest length encoding, held or
// not, whose payload unmasks to what was sent.
func TestWriteMasked(t *testing.T) {
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
	defer cc.Close()
	sc, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer sc.Close()
	b := newBatchConn(cc)
	r := bufio.NewReader(sc)

	for _, n := range []int{0, 1, 7, 125, 126, 127, 65535, 65536, 70000, maxBatch + 10} {
		for _, held := range []bool{false, true} {
			want := make([]byte, n)
			for i := range want {
				want[i] = byte('a' + i%26)
			}
			p := bytes.Clone(want)
			done := make(chan error, 1)
			go func() {
				if held {
					b.hold()
				}
				err := b.writeMasked(websocket.TextMessage, p)
				if held {
					if rerr := b.release(); err == nil {
						err = rerr
					}
				}
				done <- err
			}()
			var h [2]byte
			if _, err := io.ReadFull(r, h[:]); err != nil {
				t.Fatal(err)
			}
			if h[0] != 0x80|websocket.TextMessage || h[1]&0x80 == 0 {
				t.Fatalf("n=%d held=%v: header %#x %#x, want FIN+text and the mask bit", n, held, h[0], h[1])
			}
			length := int(h[1] & 0x7f)
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
			var key [4]byte
			mustRead(t, r, key[:])
			got := make([]byte, length)
			if _, err := io.ReadFull(r, got); err != nil {
				t.Fatal(err)
			}
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

func mustRead(t *testing.T, r io.Reader, p []byte) {
	t.Helper()
	if _, err := io.ReadFull(r, p); err != nil {
		t.Fatal(err)
	}
}
