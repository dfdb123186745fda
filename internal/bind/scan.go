package bind

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// The scanning here trusts that its input is valid JSON (wire.Decode checks
// it) and only keeps in bounds otherwise: on malformed input it returns -1
// or stops early, and never panics.

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// String token flags.
const (
	hasEscape   = 1 << iota // a backslash
	hasNonASCII             // a byte >= 0x80, or maybe one (long strings are not checked)
)

const (
	lsbs = 0x0101010101010101
	msbs = 0x8080808080808080
)

// longRun is the number of words without '"' or '\\' after which
// scanString treats a string as long: below it the calls to bytes.IndexByte
// cost more than they save.
const longRun = 8

// scanString returns the end of the string token at b[i] (the index after
// its closing quote; -1 if there is none) and its flags.
//
// Short strings are scanned here, eight bytes at a time; the rest of a long
// one by scanLong.
func scanString(b []byte, i int) (end, flags int) {
	var high uint64 // or of the plain bytes seen
	i++
	short := b[:min(len(b), i+8*longRun)]
	for {
		// Skip bytes other than '"' and '\\' eight at a time: m has the top
		// bit set in the first byte of x that is one of them (and maybe in
		// later bytes).
		for ; ; i += 8 {
			if i+8 > len(short) {
				if len(short) < len(b) {
					return scanLong(b, i, flags)
				}
				break
			}
			x := binary.LittleEndian.Uint64(short[i:])
			q, bs := x^(lsbs*'"'), x^(lsbs*'\\')
			if m := ((q-lsbs)&^q | (bs-lsbs)&^bs) & msbs; m != 0 {
				n := bits.TrailingZeros64(m) / 8
				high |= x & (1<<(8*n) - 1)
				i += n
				break
			}
			high |= x
		}
		if i >= len(b) {
			return -1, 0
		}
		switch c := b[i]; c {
		case '"':
			if high&msbs != 0 {
				flags |= hasNonASCII
			}
			return i + 1, flags
		case '\\':
			flags |= hasEscape
			i += 2
		default:
			high |= uint64(c)
			i++
		}
	}
}

// scanLong finishes scanString for a long string, from b[i] (not inside an
// escape), with the flags so far. The end of the string and the next
// backslash are found with bytes.IndexByte (SIMD); as the input is valid
// JSON, the bytes between need no other check, and the string is flagged
// hasNonASCII without looking. After a backslash, the bytes are tested
// eight at a time, as in scanString, until longRun words in a row hold no
// '"' or '\\', as escapes tend to come in clusters. On invalid input it
// stays in bounds.
func scanLong(b []byte, i, flags int) (end, _ int) {
	flags |= hasNonASCII
	q := -1 // once found, the first '"' at or after i (stale when q < i)
	for i <= len(b) {
		if q < i {
			k := bytes.IndexByte(b[i:], '"')
			if k < 0 {
				break
			}
			q = i + k
		}
		k := bytes.IndexByte(b[i:q], '\\')
		if k < 0 {
			return q + 1, flags
		}
		flags |= hasEscape
		i += k + 2
		short := b[:min(len(b), i+8*longRun)]
	words:
		for {
			for ; ; i += 8 {
				if i+8 > len(short) {
					if len(short) < len(b) {
						break words
					}
					break
				}
				x := binary.LittleEndian.Uint64(short[i:])
				qs, bs := x^(lsbs*'"'), x^(lsbs*'\\')
				if m := ((qs-lsbs)&^qs | (bs-lsbs)&^bs) & msbs; m != 0 {
					i += bits.TrailingZeros64(m) / 8
					break
				}
			}
			if i >= len(b) {
				return -1, 0
			}
			switch b[i] {
			case '"':
				return i + 1, flags
			case '\\':
				i += 2
				short = b[:min(len(b), i+8*longRun)]
			default:
				i++
			}
		}
	}
	return -1, 0
}

// skipValue returns the end of the value at b[i], or -1.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		end, _ := scanString(b, i)
		return end
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				end, _ := scanString(b, i)
				if end < 0 {
					return -1
				}
				i = end
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	}
	for i < len(b) {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}

// stringOf returns the string the contents s of a string token with the
// given flags stand for.
func stringOf(s []byte, flags int) string {
	if flags&hasEscape == 0 && (flags&hasNonASCII == 0 || utf8.Valid(s)) {
		return string(s)
	}
	b := appendUnquoted(make([]byte, 0, len(s)), s)
	// b is never written again: the string may own it.
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// appendUnquoted appends to b the contents s of a string token, unescaped,
// with invalid UTF-8 and unpaired surrogates replaced by U+FFFD, exactly as
// encoding/json does.
func appendUnquoted(b, s []byte) []byte {
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && s[j] != '\\' && s[j] < utf8.RuneSelf {
			j++
		}
		b = append(b, s[i:j]...)
		if i = j; i >= len(s) {
			break
		}
		if s[i] != '\\' {
			r, size := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = utf8.AppendRune(b, r)
			} else {
				b = append(b, s[i:i+size]...)
			}
			i += size
			continue
		}
		if i+1 >= len(s) {
			break
		}
		switch c := s[i+1]; c {
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r := hex4(s, i)
			if r < 0 {
				return b
			}
			i += 6
			if utf16.IsSurrogate(r) {
				// A pair, or else U+FFFD for the first half alone.
				if r = utf16.DecodeRune(r, hex4(s, i)); r != utf8.RuneError {
					i += 6
				}
			}
			b = utf8.AppendRune(b, r)
			continue
		default: // '"', '\\', '/'
			b = append(b, c)
		}
		i += 2
	}
	return b
}

// hex4 returns the code unit of the \uXXXX escape at s[i], or -1.
func hex4(s []byte, i int) rune {
	if len(s)-i < 6 || s[i] != '\\' || s[i+1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[i+2 : i+6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// storeNumber parses the number literal lit as encoding/json does for a
// value of the given kind and size, and stores it at p. It reports false
// for a literal that does not fit (a fraction or exponent for an integer,
// out of range), which encoding/json reports as a type error.
func storeNumber(p unsafe.Pointer, k kind, size int, lit []byte) bool {
	switch k {
	case kindInt:
		n, ok := parseInt(lit)
		if !ok || n != n<<(64-size)>>(64-size) {
			return false
		}
		switch size {
		case 8:
			*(*int8)(p) = int8(n)
		case 16:
			*(*int16)(p) = int16(n)
		case 32:
			*(*int32)(p) = int32(n)
		default:
			*(*int64)(p) = n
		}
	case kindUint:
		n, ok := parseUint(lit)
		if !ok || size < 64 && n>>size != 0 {
			return false
		}
		switch size {
		case 8:
			*(*uint8)(p) = uint8(n)
		case 16:
			*(*uint16)(p) = uint16(n)
		case 32:
			*(*uint32)(p) = uint32(n)
		default:
			*(*uint64)(p) = n
		}
	case kindFloat:
		x, err := strconv.ParseFloat(string(lit), size)
		if err != nil {
			return false
		}
		if size == 32 {
			*(*float32)(p) = float32(x)
		} else {
			*(*float64)(p) = x
		}
	}
	return true
}

// parseUint parses decimal digits, as strconv.ParseUint(s, 10, 64).
func parseUint(s []byte) (uint64, bool) {
	var n uint64
	for _, c := range s {
		d := uint64(c - '0')
		if d > 9 || n > math.MaxUint64/10 {
			return 0, false
		}
		if n = n*10 + d; n < d {
			return 0, false // wrapped
		}
	}
	return n, len(s) > 0
}

// parseInt parses an optional '-' and decimal digits, as
// strconv.ParseInt(s, 10, 64).
func parseInt(s []byte) (int64, bool) {
	if len(s) > 0 && s[0] == '-' {
		n, ok := parseUint(s[1:])
		return -int64(n), ok && n <= 1<<63
	}
	n, ok := parseUint(s)
	return int64(n), ok && n <= math.MaxInt64
}
