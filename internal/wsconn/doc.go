// Package wsconn is the socket under a wsrpc connection: the net.Conn that
// gorilla/websocket reads and writes, wrapped in a [Conn] that batches the
// writer's frames into one write, reads ahead while the peer sends a lot,
// owns the socket's write deadline once the handshake is done, and writes
// a client's data frames itself, masked in place ([Conn.WriteMasked]).
//
// Everything in wsrpc that depends on how gorilla happens to use its
// net.Conn, rather than on its API, is here, together with the tests that
// check it (gorilla_test.go): they run against the real gorilla package and
// fail loudly, naming the assumption, when one no longer holds. Run them
// before upgrading gorilla (go.mod says so beside its line).
//
// # What this package assumes of gorilla/websocket (v1.5.3)
//
// A. One Write per control frame. [websocket.Conn.WriteControl] builds the
// whole frame (header, mask key, payload) in one buffer and sends it with
// a single Write on the net.Conn. A client's data frames, which
// [Conn.WriteMasked] writes beside gorilla, and gorilla's control frames
// (pings, the pongs of its ping handler, close frames) are each one Write
// under the Conn's lock, so neither can land inside the other. Were
// gorilla to write a control frame in pieces, a data frame could split it
// and the peer would read garbage. Checked by TestAssumptionA*.
//
// B. A server's payload passes by reference. On a server without
// compression, [websocket.Conn.WriteMessage] copies the frame header and
// the first bytes of the payload into its write buffer (as many as fit:
// wsrpc's Upgrader has a 128-byte one) and writes them, then writes the
// rest of the payload with a second Write, as the tail of the slice it
// was given (data[n:], the same memory, through a net.Buffers, which
// calls Write once per buffer on anything but the net package's own
// connections). [Conn.Write] recognizes that tail by pointer identity,
// the address of its last byte equal to that of the slice given to
// [Conn.Keep], and references it rather than copying it into the batch.
// Were this to stop holding, the payload would be copied: still correct,
// but the fast path would be gone without a sound. Checked by
// TestAssumptionB*.
//
// C. Deadlines go through SetWriteDeadline, before each write. gorilla
// sets the socket's write deadline only with net.Conn.SetWriteDeadline,
// just before it writes: WriteControl its deadline argument (the pong's
// is a second away), WriteMessage the deadline given to
// [websocket.Conn.SetWriteDeadline]. Once [Conn.Own] was called the Conn
// ignores them all and bounds each write to the socket by its own
// timeout, so a control frame's short deadline never stays on the socket
// for the data frames that follow, those WriteMasked writes past gorilla
// included. WriteControl's deadline still bounds its wait for gorilla's
// write lock, which is a timer of its own. The handshakes set deadlines
// too, before Own: [websocket.Upgrader.Upgrade] clears them with
// SetDeadline and bounds its response with SetWriteDeadline
// (HandshakeTimeout), and [websocket.Dialer] bounds the whole handshake
// with SetDeadline (the context's deadline) and clears it at the end.
// These apply as set: the write deadline at the next write. Checked by
// TestAssumptionC*.
//
// D. NetConn is the net.Conn gorilla was given. [websocket.Upgrader]
// hijacks the connection through the http.ResponseWriter it is given
// ([Hijacker]), and [websocket.Dialer] takes the net.Conn that its
// NetDialContext returns ([New]); [websocket.Conn.NetConn] returns that
// very value, or, over wss, the *tls.Conn gorilla made over it, whose
// NetConn returns it. [Of] finds the Conn this way, and tells whether
// gorilla writes to it directly, which WriteMasked requires (with A).
// Checked by TestAssumptionD*.
//
// E. Frames written beside gorilla are frames to gorilla's reader. A data
// frame from WriteMasked (final, masked, with the shortest length
// encoding, the key's first byte applying to the payload's first byte)
// reads back, in order, on a gorilla peer, between the control frames
// that gorilla writes on the same socket at the same time. Checked by
// TestAssumptionE*.
//
// The caller, wsrpc's writer, keeps the rest of the bargain: one
// goroutine writes data frames, between Hold and Release; on a client
// that writes with WriteMasked, gorilla writes only control frames and
// the close frame; nothing is written after a close frame.
package wsconn
