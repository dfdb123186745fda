package wsconn

// The tests of what this package assumes of gorilla/websocket (doc.go,
// A to E), run against the real gorilla package over 127.0.0.1. When one
// fails after a gorilla upgrade, the message names the assumption and
// where to look: do not upgrade until the package is adapted.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// broken fails the test for an assumption about gorilla that no longer
// holds.
func broken(t *testing.T, assumption, check, format string, args ...any) {
	t.Helper()
	t.Fatalf("\n\tGORILLA ASSUMPTION %s BROKEN (internal/wsconn, doc.go): %s\n\tcheck: %s\n\twsrpc's socket wrapper depends on it: adapt internal/wsconn before upgrading gorilla/websocket",
		assumption, fmt.Sprintf(format, args...), check)
}

// frameHeader parses the header of the frame that starts p: its first
// byte, payload length, whether it is masked, and the header's length.
func frameHeader(p []byte) (b0 byte, length int, masked bool, hlen int, ok bool) {
	if len(p) < 2 {
		return 0, 0, false, 0, false
	}
	b0, masked, length, hlen = p[0], p[1]&0x80 != 0, int(p[1]&0x7f), 2
	switch length {
	case 126:
		if len(p) < 4 {
			return 0, 0, false, 0, false
		}
		length, hlen = int(binary.BigEndian.Uint16(p[2:])), 4
	case 127:
		if len(p) < 10 {
			return 0, 0, false, 0, false
		}
		length, hlen = int(binary.BigEndian.Uint64(p[2:])), 10
	}
	if masked {
		hlen += 4
	}
	return b0, length, masked, hlen, len(p) >= hlen
}

// recordedPair is newPair with a recorder between gorilla and the socket
// on one side ("client" or "server"); wrap, if not nil, wraps the
// recorder in turn.
func recordedPair(t *testing.T, side string, o pairOpts, wrap func(net.Conn) net.Conn) (cl, sv *websocket.Conn, rec *recorder) {
	t.Helper()
	w := func(c net.Conn) net.Conn {
		rec = record(c)
		if wrap != nil {
			return wrap(rec)
		}
		return rec
	}
	if side == "client" {
		o.wrapClient = w
	} else {
		o.wrapServer = w
	}
	cl, sv = newPair(t, o)
	return cl, sv, rec
}

// TestAssumptionAControlFrameIsOneWrite: gorilla's WriteControl sends
// each control frame, ping, pong or close, empty or of the largest
// payload, whole with one Write on the net.Conn, on both sides.
func TestAssumptionAControlFrameIsOneWrite(t *testing.T) {
	const check = "websocket.Conn.WriteControl (conn.go) builds the frame in one buffer and calls c.conn.Write once; WriteMasked relies on it to keep its frames and gorilla's apart"
	for _, side := range []string{"client", "server"} {
		t.Run(side, func(t *testing.T) {
			cl, sv, rec := recordedPair(t, side, pairOpts{}, nil)
			ws := cl
			if side == "server" {
				ws = sv
			}
			rec.take() // the handshake
			frames := []struct {
				mt   int
				data []byte
			}{
				{websocket.PingMessage, nil},
				{websocket.PingMessage, payload("ping", 125)},
				{websocket.PongMessage, payload("pong", 1)},
				{websocket.PongMessage, payload("pong", 125)},
				{websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, strings.Repeat("x", 123))},
			}
			for _, f := range frames {
				if err := ws.WriteControl(f.mt, f.data, time.Now().Add(time.Minute)); err != nil {
					t.Fatalf("WriteControl(%d, %d bytes): %v", f.mt, len(f.data), err)
				}
				w := writes(rec.take())
				if len(w) != 1 {
					broken(t, "A (one Write per control frame)", check,
						"a %s's WriteControl of type %d with %d payload bytes made %d Writes on the net.Conn, want 1", side, f.mt, len(f.data), len(w))
				}
				b0, length, masked, hlen, ok := frameHeader(w[0].data)
				if !ok || b0 != 0x80|byte(f.mt) || length != len(f.data) || masked != (side == "client") || len(w[0].data) != hlen+length {
					broken(t, "A (one Write per control frame)", check,
						"a %s's WriteControl of type %d with %d payload bytes wrote %d bytes (% x…), not one whole frame", side, f.mt, len(f.data), len(w[0].data), w[0].data[:min(len(w[0].data), 16)])
				}
			}
		})
	}
}

// TestAssumptionBServerPayloadByReference: a server's WriteMessage, with
// wsrpc's write buffer, writes the frame header and the payload's first
// bytes with one Write, then the rest of the payload, at least minKeep
// bytes of it, with a second Write of the very slice it was given: the
// same memory, its last byte where the payload's is.
func TestAssumptionBServerPayloadByReference(t *testing.T) {
	const check = "websocket.Conn.WriteMessage's server fast path and messageWriter.flushFrame (conn.go): copy(c.writeBuf[mw.pos:], data), then c.write(…, c.writeBuf[framePos:w.pos], data[n:]) through net.Buffers, one Write per buffer"
	cl, sv, rec := recordedPair(t, "server", pairOpts{upgrader: websocket.Upgrader{WriteBufferSize: serverWriteBuffer}}, nil)
	rec.take()
	for _, n := range []int{minKeep + serverWriteBuffer, 16 << 10, 100 << 10, 300 << 10} {
		p := payload(fmt.Sprintf("<B %d>", n), n)
		read := readPayload(cl, p)
		if err := sv.WriteMessage(websocket.BinaryMessage, p); err != nil {
			t.Fatal(err)
		}
		if err := <-read; err != nil {
			t.Fatalf("the client's read of %d bytes: %v", n, err)
		}
		w := writes(rec.take())
		if len(w) != 2 {
			broken(t, "B (a server's payload passes by reference)", check,
				"WriteMessage of %d bytes made %d Writes on the net.Conn, want 2: the header with the payload's head, then its tail", n, len(w))
		}
		head, tail := w[0], w[1].p
		if len(tail) == 0 || &tail[len(tail)-1] != &p[len(p)-1] {
			broken(t, "B (a server's payload passes by reference)", check,
				"the second Write of WriteMessage(%d bytes) is not the tail of the payload given (pointer identity): gorilla copies it, and wsconn.Conn.Write can no longer keep it by reference", n)
		}
		if len(tail) < minKeep || len(tail) > n {
			broken(t, "B (a server's payload passes by reference)", check,
				"WriteMessage(%d bytes) passed a tail of %d bytes through, want at least minKeep (%d): gorilla copies more of the payload into its write buffer", n, len(tail), minKeep)
		}
		b0, length, masked, hlen, ok := frameHeader(head.data)
		if !ok || b0 != 0x80|websocket.BinaryMessage || length != n || masked || !bytes.Equal(head.data[hlen:], p[:n-len(tail)]) {
			broken(t, "B (a server's payload passes by reference)", check,
				"the first Write of WriteMessage(%d bytes) is not the frame's header followed by the payload's first %d bytes", n, n-len(tail))
		}
	}
}

// TestAssumptionBKeptPayloadReferenced: the fast path of B end to end: a
// held Conn under a gorilla server, given the payload by Keep, references
// it in the batch rather than copying it.
func TestAssumptionBKeptPayloadReferenced(t *testing.T) {
	const check = "TestAssumptionBServerPayloadByReference first; then wsconn.Conn.Write's pointer-identity test"
	cl, sv := newPair(t, pairOpts{upgrader: websocket.Upgrader{WriteBufferSize: serverWriteBuffer}})
	c, _ := Of(sv)
	if c == nil {
		broken(t, "D (NetConn is the net.Conn gorilla was given)", "TestAssumptionDNetConn", "Of found no Conn under the server's websocket.Conn")
	}
	if !c.vec {
		t.Fatalf("the hijacked socket is a %T, not a *net.TCPConn", c.nc)
	}
	c.Own(time.Minute)
	for _, n := range []int{minKeep + serverWriteBuffer, 16 << 10, 100 << 10, 300 << 10} {
		p := payload(fmt.Sprintf("<kept %d>", n), n)
		read := readPayload(cl, p)
		c.Hold()
		c.Keep(p)
		if err := sv.WriteMessage(websocket.BinaryMessage, p); err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		referenced := false
		for _, s := range c.buf.segs {
			referenced = referenced || len(s.p) > 0 && &s.p[len(s.p)-1] == &p[len(p)-1]
		}
		c.mu.Unlock()
		if err := c.Release(); err != nil {
			t.Fatal(err)
		}
		if err := <-read; err != nil {
			t.Fatalf("the client's read of %d bytes: %v", n, err)
		}
		if !referenced {
			broken(t, "B (a server's payload passes by reference)", check,
				"a held Conn copied the %d-byte payload of gorilla's WriteMessage into its batch instead of keeping it by reference", n)
		}
	}
}

// TestAssumptionCWriteDeadlines: after the handshake, gorilla sets the
// write deadline only with SetWriteDeadline on the net.Conn, before it
// writes: WriteControl the deadline it is given, WriteMessage the one
// given to websocket.Conn.SetWriteDeadline. It never sets the read
// deadline, nor both with SetDeadline, when it writes.
func TestAssumptionCWriteDeadlines(t *testing.T) {
	const check = "websocket.Conn.WriteControl and Conn.write (conn.go): c.conn.SetWriteDeadline(deadline) right before c.conn.Write; wsconn.Conn ignores it once owned and sets its own"
	for _, side := range []string{"client", "server"} {
		t.Run(side, func(t *testing.T) {
			cl, sv, rec := recordedPair(t, side, pairOpts{upgrader: websocket.Upgrader{WriteBufferSize: serverWriteBuffer}}, nil)
			ws := cl
			if side == "server" {
				ws = sv
			}
			rec.take()
			// ev must be SetWriteDeadline(d), then writes only.
			deadlineFirst := func(what string, d time.Time, ev []event) {
				t.Helper()
				ok := len(ev) >= 2 && ev[0].op == "SetWriteDeadline" && ev[0].t.Equal(d)
				for _, e := range ev[1:] {
					ok = ok && e.op == "Write"
				}
				if !ok {
					broken(t, "C (write deadlines through SetWriteDeadline, before each write)", check,
						"a %s's %s did %s on the net.Conn, want SetWriteDeadline(the deadline), then only Writes", side, what, ops(ev))
				}
			}
			d := time.Now().Add(time.Minute)
			if err := ws.WriteControl(websocket.PingMessage, []byte("deadline"), d); err != nil {
				t.Fatal(err)
			}
			deadlineFirst("WriteControl(ping, deadline)", d, rec.take())
			d = time.Now().Add(2 * time.Minute)
			ws.SetWriteDeadline(d)
			if err := ws.WriteMessage(websocket.BinaryMessage, payload("deadline", 300)); err != nil {
				t.Fatal(err)
			}
			deadlineFirst("WriteMessage after SetWriteDeadline", d, rec.take())
		})
	}
}

// TestAssumptionCHandshakeDeadlines: the handshakes' deadlines, set
// before Own, reach the socket under a Conn: the Upgrader clears the
// HTTP server's with SetDeadline and writes its response under
// HandshakeTimeout; the Dialer writes its request and reads the response
// under the context's deadline and clears both at the end. Once owned,
// the socket gets the owned deadline.
func TestAssumptionCHandshakeDeadlines(t *testing.T) {
	const check = "websocket.Upgrader.Upgrade (server.go: netConn.SetDeadline(time.Time{}), SetWriteDeadline(now+HandshakeTimeout) around the response's Write) and Dialer.DialContext (client.go: c.SetDeadline(deadline) after dialing, netConn.SetDeadline(time.Time{}) at the end)"
	const handshake = time.Minute
	var conn *Conn
	wrap := func(c net.Conn) net.Conn { conn = New(c); return conn }

	t.Run("server", func(t *testing.T) {
		before := time.Now()
		_, sv, rec := recordedPair(t, "server", pairOpts{upgrader: websocket.Upgrader{HandshakeTimeout: handshake}}, wrap)
		after := time.Now()
		ev := rec.take()
		w := -1
		for i, e := range ev {
			if e.op == "Write" {
				w = i
				break
			}
		}
		if w < 1 || ev[w-1].op != "SetWriteDeadline" || ev[w-1].t.Before(before.Add(handshake)) || ev[w-1].t.After(after.Add(handshake)) {
			broken(t, "C (handshake deadlines apply before Own)", check,
				"the Upgrader's response went out without its HandshakeTimeout on the socket: %s", ops(ev))
		}
		cleared := false
		for _, e := range ev[:w] {
			cleared = cleared || e.op == "SetReadDeadline" && e.t.IsZero()
		}
		if !cleared {
			broken(t, "C (handshake deadlines apply before Own)", check,
				"the Upgrader did not clear the HTTP server's read deadline before its response: %s", ops(ev))
		}
		ownDeadline(t, conn, rec, sv)
	})

	t.Run("client", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), handshake)
		defer cancel()
		dl, _ := ctx.Deadline()
		cl, _, rec := recordedPair(t, "client", pairOpts{ctx: ctx}, wrap)
		ev := rec.take()
		w := -1
		for i, e := range ev {
			if e.op == "Write" {
				w = i
				break
			}
		}
		var read, write bool
		for _, e := range ev[:max(w, 0)] {
			read = read || e.op == "SetReadDeadline" && e.t.Equal(dl)
			write = write || e.op == "SetWriteDeadline" && e.t.Equal(dl)
		}
		if w < 0 || !read || !write || ev[w-1].op != "SetWriteDeadline" {
			broken(t, "C (handshake deadlines apply before Own)", check,
				"the Dialer's request went out without the context's deadline on the socket's reads and writes: %s", ops(ev))
		}
		var last event
		for _, e := range ev {
			if e.op == "SetReadDeadline" {
				last = e
			}
		}
		if !last.t.IsZero() {
			broken(t, "C (handshake deadlines apply before Own)", check,
				"the Dialer left the handshake's read deadline on the socket: %s", ops(ev))
		}
		ownDeadline(t, conn, rec, cl)
	})
}

// ownDeadline owns conn, under ws, and checks that gorilla's next write
// goes out with the owned deadline, not its own.
func ownDeadline(t *testing.T, conn *Conn, rec *recorder, ws *websocket.Conn) {
	t.Helper()
	if c, _ := Of(ws); c != conn {
		broken(t, "D (NetConn is the net.Conn gorilla was given)", "TestAssumptionDNetConn", "Of(ws) = %p, not the Conn gorilla was given (%p)", c, conn)
	}
	const timeout = time.Hour
	start := time.Now()
	conn.Own(timeout)
	if err := ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	ev := rec.take()
	if len(ev) < 2 || ev[0].op != "SetWriteDeadline" || ev[0].t.Before(start.Add(timeout)) {
		t.Fatalf("after Own(%v), a ping went out with %s, want SetWriteDeadline(the owned deadline) first", timeout, ops(ev))
	}
	for _, e := range ev[1:] {
		if e.op != "Write" {
			t.Fatalf("after Own(%v), a ping went out with %s: only the owned deadline, then writes, expected", timeout, ops(ev))
		}
	}
}

// TestAssumptionDNetConn: gorilla's NetConn returns the net.Conn it was
// given: the Conn a Hijacker's Hijack returned to the Upgrader, the one
// NetDialContext returned to the Dialer, or over wss the *tls.Conn gorilla
// made over it; Of finds it, and tells whether gorilla writes to it
// directly.
func TestAssumptionDNetConn(t *testing.T) {
	const check = "websocket.Conn.NetConn (conn.go: returns c.conn), newConn's netConn in Upgrader.Upgrade (server.go: from h.Hijack()) and Dialer.DialContext (client.go: from netDial, wrapped by tls.Client for wss)"
	for _, useTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", useTLS), func(t *testing.T) {
			var dialed *Conn
			cl, sv := newPair(t, pairOpts{tls: useTLS, wrapClient: func(c net.Conn) net.Conn { dialed = New(c); return dialed }})

			// The Upgrader hijacked through the Hijacker (over TLS, the
			// Conn is over the server's *tls.Conn).
			got, ok := sv.NetConn().(*Conn)
			if !ok {
				broken(t, "D (NetConn is the net.Conn gorilla was given)", check,
					"the server's NetConn() is a %T, not the *wsconn.Conn that Hijacker.Hijack returned", sv.NetConn())
			}
			if c, direct := Of(sv); c != got || !direct {
				t.Fatalf("Of(server) = %p, %v; want %p, true", c, direct, got)
			}

			// The Dialer took what NetDialContext returned.
			nc := cl.NetConn()
			if useTLS {
				tc, ok := nc.(*tls.Conn)
				if !ok {
					broken(t, "D (NetConn is the net.Conn gorilla was given)", check,
						"a wss client's NetConn() is a %T, not the *tls.Conn over the dialed socket", nc)
				}
				nc = tc.NetConn()
			}
			if nc != net.Conn(dialed) {
				broken(t, "D (NetConn is the net.Conn gorilla was given)", check,
					"the client's NetConn() (through TLS: %v) is a %T, not the *wsconn.Conn that NetDialContext returned", useTLS, nc)
			}
			if c, direct := Of(cl); c != dialed || direct == useTLS {
				t.Fatalf("Of(client) = %p, %v; want %p, %v", c, direct, dialed, !useTLS)
			}
		})
	}
}

// TestAssumptionEMaskedFramesBesideControlFrames: a client writes data
// frames with WriteMasked, of every length encoding, held and not, while
// another goroutine sends gorilla pings through WriteControl: the gorilla
// server reads every data frame, in order and unmasked right, and every
// ping, in order, then the close frame.
func TestAssumptionEMaskedFramesBesideControlFrames(t *testing.T) {
	const check = "TestAssumptionAControlFrameIsOneWrite first; then the framing in WriteMasked against gorilla's Conn.advanceFrame (conn.go): FIN and opcode, the mask bit, the length encodings, the key's byte order"
	cl, sv := newPair(t, pairOpts{})
	c, direct := Of(cl)
	if c == nil || !direct {
		broken(t, "D (NetConn is the net.Conn gorilla was given)", "TestAssumptionDNetConn", "Of(client) = %p, %v; want the dialed Conn, direct", c, direct)
	}
	c.Own(time.Minute)

	sizes := []int{0, 1, 125, 126, minKeep, 65535, 65536, maxCopy + 1, maxBatch + 1}
	var want [][]byte
	for r := range 4 {
		for i, n := range sizes {
			want = append(want, payload(fmt.Sprintf("<E%d/%d>", r, i), n))
		}
	}

	// The server: gorilla's reader, strict about masking.
	var got [][]byte
	var pings []string
	var readErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		sv.SetPingHandler(func(s string) error { pings = append(pings, s); return nil })
		for {
			_, p, err := sv.ReadMessage()
			if err != nil {
				readErr = err
				return
			}
			got = append(got, p)
		}
	})

	// The pings, meanwhile.
	stop := make(chan struct{})
	sent := make(chan int, 1)
	go func() {
		n := 0
		defer func() { sent <- n }()
		for {
			select {
			case <-stop:
				if n >= 50 {
					return
				}
			default:
			}
			if err := cl.WriteControl(websocket.PingMessage, fmt.Appendf(nil, "ping %d", n), time.Now().Add(time.Minute)); err != nil {
				t.Errorf("ping %d: %v", n, err)
				return
			}
			n++
		}
	}()

	for r := range 4 {
		held := r%2 == 1
		if held {
			c.Hold()
		}
		for i := range sizes {
			mt := websocket.BinaryMessage
			if i%2 == 0 {
				mt = websocket.TextMessage
			}
			if err := c.WriteMasked(mt, bytes.Clone(want[r*len(sizes)+i])); err != nil {
				t.Fatalf("WriteMasked: %v", err)
			}
		}
		if held {
			if err := c.Release(); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	n := <-sent
	if err := cl.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "done"), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	if ce, ok := errors.AsType[*websocket.CloseError](readErr); !ok || ce.Code != websocket.CloseNormalClosure {
		broken(t, "E (frames written beside gorilla are frames to gorilla's reader)", check,
			"the gorilla server's read ended with %v after %d of %d data frames and %d of %d pings, not with the client's close frame", readErr, len(got), len(want), len(pings), n)
	}
	if len(got) != len(want) {
		broken(t, "E (frames written beside gorilla are frames to gorilla's reader)", check, "the server read %d data frames, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			broken(t, "E (frames written beside gorilla are frames to gorilla's reader)", check,
				"data frame %d: the server read %d bytes (%.12q…), want %d (%.12q…)", i, len(got[i]), got[i], len(want[i]), want[i])
		}
	}
	if len(pings) != n {
		broken(t, "E (frames written beside gorilla are frames to gorilla's reader)", check, "the server read %d pings, want %d", len(pings), n)
	}
	for i, s := range pings {
		if s != fmt.Sprintf("ping %d", i) {
			broken(t, "E (frames written beside gorilla are frames to gorilla's reader)", check, "ping %d read as %q", i, s)
		}
	}
}

// readPayload reads the next message on ws in a goroutine; it sends nil on
// the channel if it is p, else why not.
func readPayload(ws *websocket.Conn, p []byte) <-chan error {
	read := make(chan error, 1)
	go func() {
		_, got, err := ws.ReadMessage()
		if err == nil && !bytes.Equal(got, p) {
			err = fmt.Errorf("got %d bytes, not the payload", len(got))
		}
		read <- err
	}()
	return read
}
