package wstest

import (
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gorilla/websocket"
)

// echoHandler upgrades and echoes every message until the connection ends.
func echoHandler(t *testing.T) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			t.Errorf("upgrade: %v", err)
			return
		}
		defer ws.Close()
		for {
			mt, msg, err := ws.ReadMessage()
			if err != nil {
				return
			}
			if err := ws.WriteMessage(mt, msg); err != nil {
				return
			}
		}
	})
}

// TestServerWebSocket: a gorilla client reaches a handler that a real
// http.Server serves over pipes, with the fake clock of a synctest bubble
// and with the real one.
func TestServerWebSocket(t *testing.T) {
	run := func(t *testing.T) {
		ps := NewServer(echoHandler(t))
		defer ps.Close()
		d := websocket.Dialer{NetDialContext: ps.DialContext, HandshakeTimeout: 10 * time.Second}
		ws, resp, err := d.DialContext(t.Context(), ps.URL+"/echo", nil)
		if err != nil {
			t.Fatalf("dial %s: %v", ps.URL+"/echo", err)
		}
		defer ws.Close()
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Errorf("status %d", resp.StatusCode)
		}
		if err := ws.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		if _, msg, err := ws.ReadMessage(); string(msg) != "hello" || err != nil {
			t.Errorf("echo: %q, %v", msg, err)
		}
	}
	t.Run("synctest", func(t *testing.T) { synctest.Test(t, run) })
	t.Run("wall clock", run)
}
