package wsconn

import (
	"encoding/binary"
	"math/rand/v2"
)

// WriteMasked writes p as one final, masked data frame of type mt
// (websocket.TextMessage or BinaryMessage), as a client must send it,
// past gorilla: p is masked in place, so the caller gives it up, and while
// the Conn is held it is kept by reference rather than copied. Only a
// client's writer may call it, and only on a Conn that gorilla writes to
// directly (Of reports direct): gorilla's control frames, each one Write
// (assumption A), then never land inside this frame, nor it inside them.
func (c *Conn) WriteMasked(mt int, p []byte) error {
	key := rand.Uint32()
	maskBytes(p, key)
	return c.writeData(mt, p, true, key)
}

// WriteUnmasked writes p as one final, unmasked data frame of type mt, as
// a server sends it, past gorilla (without compression, which wsrpc never
// negotiates): while the Conn is held, p is kept by reference rather than
// copied if it is large, so it must stay intact until Release. Only a
// server's writer may call it, on a Conn that gorilla writes to directly,
// for the reason given at WriteMasked.
func (c *Conn) WriteUnmasked(mt int, p []byte) error {
	return c.writeData(mt, p, false, 0)
}

// writeData writes one final data frame, masked with key or not.
func (c *Conn) writeData(mt int, p []byte, masked bool, key uint32) error {
	var mask byte
	if masked {
		mask = 0x80
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	hdr := c.hdr[:0]
	hdr = append(hdr, 0x80|byte(mt)) // FIN, opcode
	switch n := len(p); {
	case n <= 125:
		hdr = append(hdr, mask|byte(n)) // mask bit, length
	case n <= 0xffff:
		hdr = binary.BigEndian.AppendUint16(append(hdr, mask|126), uint16(n))
	default:
		hdr = binary.BigEndian.AppendUint64(append(hdr, mask|127), uint64(n))
	}
	if masked {
		hdr = binary.LittleEndian.AppendUint32(hdr, key)
	}

	if c.holding {
		keep := c.vec && len(p) >= minKeep
		copied := len(hdr)
		if !keep {
			copied += len(p)
		}
		if c.buf.size+len(hdr)+len(p) > maxBatch || len(c.buf.b)+copied > maxCopy {
			if err := c.flushLocked(); err != nil {
				return err
			}
		}
		if keep || copied <= maxCopy {
			c.buf.add(hdr, false)
			c.buf.add(p, keep)
			return nil
		}
	}
	if err := c.flushLocked(); err != nil {
		return err
	}
	// Not held (or too large to hold): one Write of a copy, rare.
	_, err := c.nc.Write(append(hdr[:len(hdr):len(hdr)], p...))
	return err
}

// maskBytes XORs p with the masking key, whose first byte applies to
// p[0] (the key as written little-endian after the header), eight bytes
// at a time.
func maskBytes(p []byte, key uint32) {
	k := uint64(key) | uint64(key)<<32
	for len(p) >= 8 {
		binary.LittleEndian.PutUint64(p, binary.LittleEndian.Uint64(p)^k)
		p = p[8:]
	}
	for i := range p {
		p[i] ^= byte(k >> (8 * (i % 4)))
	}
}
