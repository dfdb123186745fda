package wsrpc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsrpc/wsrpc/internal/wstest"
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
				opts.TLSConfig = trusting(hs)
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

// TestWriteTimeoutExactly: a peer that stops reading is disconnected by the
// WriteTimeout of the side writing to it, exactly WriteTimeout after the
// write that found the link full began, with the write's timeout as the
// cause, on either side and however the frames are written; the call
// whose frame was being written fails with ErrConnectionLost. It runs
// under testing/synctest over an in-memory pipe; TestClientWriteTimeout
// and TestStalledReaderWriteTimeout test the same over real sockets.
func TestWriteTimeoutExactly(t *testing.T) {
	const writeTimeout = 5 * time.Second
	big := strings.Repeat("x", 4*wstest.BufferSize) // more than the pipe holds
	for _, side := range []string{"client", "server"} {
		for _, binary := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/binary=%v", side, binary), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					lost := make(chan error, 1)
					onDisconnect := func(_ *Conn, err error) { sendNoWait(lost, err) }
					var caller Caller
					if side == "client" {
						ps := rawPipeServer(t, func(*websocket.Conn) { <-t.Context().Done() }) // never reads
						caller = pipeDial(t, ps, &DialOptions{
							ConnOptions: ConnOptions{
								WriteTimeout: writeTimeout,
								KeepAlive:    KeepAlive{Interval: -1},
								BinaryFrames: binary,
								OnDisconnect: onDisconnect,
							},
							DisableReconnect: true,
						})
					} else {
						conns := make(chan *Conn, 1)
						_, ps := pipeServer(t, nil, &ServerOptions{
							ConnOptions: ConnOptions{
								WriteTimeout: writeTimeout,
								KeepAlive:    KeepAlive{Interval: -1},
								BinaryFrames: binary,
								OnConnect:    func(_ context.Context, c *Conn) error { conns <- c; return nil },
								OnDisconnect: onDisconnect,
							},
						})
						rawPipeDial(t, ps) // never reads
						caller = <-conns
					}

					start := time.Now()
					calls := make(chan error, 1)
					go func() { calls <- caller.Call(t.Context(), "echo", textArgs{big}, nil) }()
					err := await(t, lost, time.Minute, "disconnect of the peer that stopped reading")
					if took := time.Since(start); took != writeTimeout {
						t.Errorf("disconnected after %v, want WriteTimeout %v", took, writeTimeout)
					}
					if !isTimeout(err) {
						t.Errorf("OnDisconnect: %v, want a write timeout", err)
					}
					if err := await(t, calls, time.Minute, "the call"); !errors.Is(err, ErrConnectionLost) {
						t.Errorf("the call being written: %v, want ErrConnectionLost", err)
					}
				})
			})
		}
	}
}
