package wsrpc

import (
	"context"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

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
