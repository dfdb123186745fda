package wsconn

import (
	"bufio"
	"net"
	"net/http"
)

// Hijacker is the http.ResponseWriter to hand gorilla's Upgrader instead
// of the request's own, so that the connection it hijacks is wrapped in a
// Conn: ws.NetConn() is then that Conn (assumption D), which Of finds.
type Hijacker struct {
	http.ResponseWriter
	// Held makes the new Conn held (Hold): what gorilla writes on it, the
	// handshake's response, waits for ReleaseWithin, so that a server can
	// make the connection known before its client learns it is up.
	Held bool
}

// Hijack takes over the request's connection, as http.Hijacker does, and
// returns it wrapped in a new Conn.
func (h *Hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	wc := New(c)
	if h.Held {
		wc.Hold()
	}
	return wc, brw, nil
}
