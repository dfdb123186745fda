package wsrpc

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gorilla/websocket"
)

// TestCloseTimeoutExactly: Client.Close waits for the server's close frame
// CloseTimeout exactly (DefaultCloseTimeout by default) before it closes
// the socket, and not at all with a negative CloseTimeout. It runs under
// testing/synctest over an in-memory pipe; TestCloseTimeout tests the same
// over a real socket.
func TestCloseTimeoutExactly(t *testing.T) {
	for _, tc := range []struct {
		timeout, want time.Duration
	}{{0, DefaultCloseTimeout}, {5 * time.Second, 5 * time.Second}, {-1, 0}} {
		t.Run(fmt.Sprintf("CloseTimeout=%v", tc.timeout), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				gotClose := make(chan error, 1)
				ps := rawPipeServer(t, func(ws *websocket.Conn) {
					ws.SetCloseHandler(func(int, string) error { return nil }) // never answers a close
					_, _, err := ws.ReadMessage()
					gotClose <- err
					<-t.Context().Done() // nor closes the socket
				})
				cl := pipeDial(t, ps, &DialOptions{ConnOptions: ConnOptions{CloseTimeout: tc.timeout, KeepAlive: KeepAlive{Interval: -1}}})
				start := time.Now()
				cl.Close()
				if took := time.Since(start); took != tc.want {
					t.Errorf("Close took %v, want %v", took, tc.want)
				}
				if err := await(t, gotClose, time.Minute, "the close frame"); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
					t.Errorf("the server read %v, want the close frame (1000)", err)
				}
			})
		})
	}
}

// TestCloseOnReader: Client.Close and Conn.Close return when called on the
// connection's reader, from OnError or from a Go call's done, and the
// connection then ends within CloseTimeout even when the peer never
// answers the close frame.
func TestCloseOnReader(t *testing.T) {
	for _, tc := range []struct {
		name   string
		client bool // Client.Close, else Conn.Close
		done   bool // from a Go call's done, else from OnError
	}{
		{"Conn.Close from OnError", false, false},
		{"Client.Close from OnError", true, false},
		{"Conn.Close from done", false, true},
		{"Client.Close from done", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := rawPeer(t, func(ctx context.Context, ws *websocket.Conn) {
				if tc.done {
					r, err := readRequest(ws)
					if err != nil {
						t.Errorf("peer: %v", err)
						return
					}
					r.answer(ws, "1")
				} else {
					ws.WriteMessage(websocket.TextMessage, []byte("not json"))
				}
				<-ctx.Done() // reads nothing more: the close frame gets no answer
			})
			var cl *Client
			dialed := make(chan struct{})
			returned := make(chan struct{})
			closeOnReader := func(c *Conn) {
				<-dialed
				if tc.client {
					cl.Close()
				} else {
					c.Close()
				}
				close(returned)
			}
			opts := rawDialOptions()
			opts.CloseTimeout = 20 * time.Millisecond
			if !tc.done {
				opts.OnError = func(c *Conn, _ error) { closeOnReader(c) }
			}
			cl = testDial(t, url, opts)
			c := cl.Conn()
			close(dialed)
			if tc.done {
				if err := c.Go(ctxT(t), "bye", nil, func(*Reply) { closeOnReader(c) }); err != nil {
					t.Fatal(err)
				}
			}
			ctx := ctxT(t)
			select {
			case <-returned:
			case <-ctx.Done():
				t.Fatal("Close on the reader did not return")
			}
			select {
			case <-c.Done():
			case <-ctx.Done():
				t.Fatal("the connection did not end")
			}
			if tc.client {
				select {
				case <-cl.Done():
				case <-ctx.Done():
					t.Fatal("the client did not end")
				}
			}
		})
	}
}
