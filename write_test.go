package wsrpc

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLargeFramesBatched sends frames of many sizes at once both ways, so
// that one batch of writes mixes copied and referenced payloads, fills up
// and flushes mid-way, and interleaves with keep-alive pings: every call
// gets its own payload back intact, over plain TCP and over TLS (where
// nothing may be kept by reference). internal/wsconn tests the socket
// wrapper on its own; this is the writer and the wrapper together.
func TestLargeFramesBatched(t *testing.T) {
	// Around wsconn's bounds: it keeps payloads of 2 KiB (minKeep) and
	// more by reference, and writes a batch once it holds 256 KiB
	// (maxBatch).
	const minKeep, maxBatch = 2 << 10, 256 << 10
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
