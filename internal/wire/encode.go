package wire

import (
	"encoding/hex"
	"math/bits"
	"math/rand/v2"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Frames are written compactly, with the absent half of the envelope as an
// explicit null, the form the Python library sends.

// AppendRequest appends a request frame. args must be a JSON object (nil
// means {}); callID is a plain string; timeoutMS > 0 adds the negotiated
// "timeout_ms" extension, and a non-empty traceParent or traceState the
// "traceparent" or "tracestate" one.
func AppendRequest(b []byte, method string, args []byte, callID string, timeoutMS int64, traceParent, traceState string) []byte {
	return AppendRequestParts(b, method, args, nil, callID, timeoutMS, traceParent, traceState)
}

// AppendRequestParts is AppendRequest with the arguments in two parts,
// head then tail, written one after the other (both empty means {}).
func AppendRequestParts(b []byte, method string, head, tail []byte, callID string, timeoutMS int64, traceParent, traceState string) []byte {
	b = append(b, `{"request":{"method":`...)
	b = AppendString(b, method)
	b = append(b, `,"arguments":`...)
	if len(head)+len(tail) == 0 {
		b = append(b, "{}"...)
	} else {
		b = append(append(b, head...), tail...)
	}
	b = append(b, `,"call_id":`...)
	b = AppendString(b, callID)
	if timeoutMS > 0 {
		b = append(b, `,"timeout_ms":`...)
		b = strconv.AppendInt(b, timeoutMS, 10)
	}
	if traceParent != "" {
		b = append(b, `,"traceparent":`...)
		b = AppendString(b, traceParent)
	}
	if traceState != "" {
		b = append(b, `,"tracestate":`...)
		b = AppendString(b, traceState)
	}
	return append(b, `},"response":null}`...)
}

// AppendResponseStart appends the head of a response frame, up to where its
// result value goes. Follow it with the result's JSON and AppendResponseEnd.
func AppendResponseStart(b []byte) []byte {
	return append(b, `{"request":null,"response":{"result":`...)
}

// AppendResponseEnd closes a response frame begun by AppendResponseStart.
// callID is the raw call_id token of the request (nil writes null).
func AppendResponseEnd(b []byte, resultType string, callID []byte) []byte {
	b = append(b, `,"result_type":`...)
	b = AppendString(b, resultType)
	b = append(b, `,"call_id":`...)
	b = appendToken(b, callID)
	return append(b, "}}"...)
}

// AppendError appends an error response: result null, result_type "error",
// and the error object {"code","message"[,"data"]}.
func AppendError(b []byte, callID []byte, code int, message string, data []byte) []byte {
	b = append(b, `{"request":null,"response":{"result":null,"result_type":"error","call_id":`...)
	b = appendToken(b, callID)
	b = append(b, `,"error":{"code":`...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, `,"message":`...)
	b = AppendString(b, message)
	if len(data) > 0 {
		b = append(b, `,"data":`...)
		b = append(b, data...)
	}
	return append(b, "}}}"...)
}

// AppendCancel appends the extension frame that tells the peer the caller
// of callID gave up.
func AppendCancel(b []byte, callID string) []byte {
	b = append(b, `{"request":null,"response":null,"cancel":{"call_id":`...)
	b = AppendString(b, callID)
	return append(b, "}}"...)
}

func appendToken(b, tok []byte) []byte {
	if len(tok) == 0 {
		return append(b, "null"...)
	}
	return append(b, tok...)
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// encoding/json does.
//
// Plain ASCII is tested eight bytes at a time, up to lim. Past it, when
// longRun words or more are left, a run of plain ASCII is skipped in bulk:
// the next '"' and '\\' are found with strings.IndexByte (SIMD), and the
// control and non-ASCII bytes before them by plainPrefix; then lim moves
// longRun words past the run, as the bytes that need care tend to cluster.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	lim := min(len(s), 8*longRun)
	q, bs := -1, -1 // once found, the next '"' and '\\' at or after i, or len(s) (stale when < i)
	for i := 0; i < len(s); {
		// Skip plain ASCII eight bytes at a time.
		for {
			if i+8 > lim {
				if lim == len(s) {
					break // the last bytes: one at a time below
				}
				if len(s)-i < 8*longRun {
					lim = len(s) // too little left for bulk skipping to pay
					continue
				}
				if q < i {
					q = indexFrom(s, i, '"')
				}
				if bs < i {
					bs = indexFrom(s, i, '\\')
				}
				i += plainPrefix(s[i:min(q, bs)])
				lim = min(len(s), i+8*longRun)
				break
			}
			if x := load64(s, i); special(x)|x&msbs != 0 {
				break
			}
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// indexFrom returns the index of the first c in s at or after i, or len(s).
func indexFrom(s string, i int, c byte) int {
	if k := strings.IndexByte(s[i:], c); k >= 0 {
		return i + k
	}
	return len(s)
}

// plainPrefix returns the length of the longest prefix of s of bytes in
// [0x20, 0x80). Per word, the top bit of each byte of x | (x - 0x20...) is
// set for a byte < 0x20 or >= 0x80, and clear for the others, except above
// a byte < 0x20, whose borrow may set it: the lowest set bit is exact.
func plainPrefix(s string) int {
	n := len(s)
	for len(s) >= 32 {
		w := s[:32]
		x0, x1, x2, x3 := le64(w[0:8]), le64(w[8:16]), le64(w[16:24]), le64(w[24:32])
		if (x0|(x0-lsbs*0x20)|x1|(x1-lsbs*0x20)|x2|(x2-lsbs*0x20)|x3|(x3-lsbs*0x20))&msbs != 0 {
			break
		}
		s = s[32:]
	}
	for len(s) >= 8 {
		x := le64(s[:8])
		if m := (x | (x - lsbs*0x20)) & msbs; m != 0 {
			return n - len(s) + bits.TrailingZeros64(m)/8
		}
		s = s[8:]
	}
	for len(s) > 0 && s[0] >= 0x20 && s[0] < utf8.RuneSelf {
		s = s[1:]
	}
	return n - len(s)
}

// le64 loads the eight bytes of w little-endian (the compiler makes it one
// load).
func le64(w string) uint64 {
	_ = w[7]
	return uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
		uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
}

// load64 loads s[i:i+8] little-endian.
func load64(s string, i int) uint64 {
	return le64(s[i : i+8])
}

// NewCallID returns a call id of the Python library's form: the 32 lowercase
// hex digits of a random (version 4) UUID.
func NewCallID() string {
	var h [32]byte
	PutCallID(&h)
	return string(h[:])
}

// PutCallID writes a new call id, as NewCallID returns, into h.
func PutCallID(h *[32]byte) {
	var u [16]byte
	x, y := rand.Uint64(), rand.Uint64()
	for i := range 8 {
		u[i] = byte(x >> (8 * i))
		u[8+i] = byte(y >> (8 * i))
	}
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	hex.Encode(h[:], u[:])
}
