package wsrpc

import (
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
