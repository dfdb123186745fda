// Package wire encodes and decodes the envelope of the fastapi_websocket_rpc
// wire protocol (see PROTOCOL.md at the repository root), plus wsrpc's
// negotiated extensions.
//
// Decoding does not copy: the byte slices of a decoded [Frame] alias the
// input, which must stay unchanged while the frame is in use.
package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
)

// Kind says what a frame carries.
type Kind uint8

// Frame kinds.
const (
	KindInvalid Kind = iota
	KindRequest
	KindResponse
	KindCancel // wsrpc extension: the caller gave up on CallID
)

// Decoding errors. ErrParse means the bytes are not JSON at all; every other
// decoding error is an *InvalidError.
var ErrParse = errors.New("frame is not valid JSON")

// InvalidError is a frame that is JSON but not a valid envelope. Params is
// true when only the request's arguments are wrong, so the right answer is
// "invalid params" rather than "invalid request".
type InvalidError struct {
	Reason string
	Params bool
}

func (e *InvalidError) Error() string { return e.Reason }

func invalid(format string, args ...any) error {
	return &InvalidError{Reason: fmt.Sprintf(format, args...)}
}

// Frame is one decoded envelope. Byte slices alias the decoded input.
type Frame struct {
	Kind Kind

	// CallID is the raw JSON token of call_id: a string with its quotes, a
	// number, or null. It is nil when the key is absent. It is set for
	// requests, responses and cancels, and also, where it could be read,
	// alongside a decoding error, so that the error can be answered.
	CallID []byte

	// Request fields.
	Method []byte // unescaped
	Args   []byte // raw JSON object; nil when absent or null
	// Args[Str:StrEnd] is a long string token in Args (with its quotes),
	// StrEsc if it has escapes; StrEnd is 0 if none was recorded.
	Str, StrEnd int
	StrEsc      bool
	TimeoutMS   int64 // extension "timeout_ms": the caller's remaining time; 0 if none
	// Extension "traceparent" and "tracestate": the caller's W3C trace
	// context, unescaped; nil when absent, not a string, or longer than
	// MaxTraceLen bytes. Nothing else about them is checked.
	TraceParent, TraceState []byte

	// Response fields.
	Result     []byte // raw JSON value; nil when absent
	ResultType []byte // unescaped; nil when absent or null
	Error      []byte // raw JSON object; nil when absent or null
}

// ID returns the call id as a Go string: the unescaped string, the number's
// text, or "" for null or absent.
func (f *Frame) ID() string { return TokenString(f.CallID) }

// TokenString returns the string a raw call_id token stands for.
func TokenString(tok []byte) string {
	if len(tok) == 0 || tok[0] == 'n' {
		return ""
	}
	if tok[0] != '"' {
		return string(tok)
	}
	return string(unquote(tok))
}

// unquote returns the contents of a JSON string token, unescaped. tok must be
// a valid JSON string.
func unquote(tok []byte) []byte {
	inner := tok[1 : len(tok)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return inner
	}
	var s string
	if err := json.Unmarshal(tok, &s); err != nil {
		return inner // unreachable for validated input
	}
	return []byte(s)
}

// The envelope's members, and the members of each of its parts that Decode
// reads. The indexes of these lists index envelope.
var (
	topKeys  = []string{"request", "response", "cancel"}
	partKeys = [3][]string{
		{"method", "arguments", "call_id", "timeout_ms", "traceparent", "tracestate"},
		{"result", "result_type", "call_id", "error"},
		{"call_id"},
	}
)

const (
	partRequest = iota
	partResponse
	partCancel
)

// envelope holds the raw values Decode picks out of a frame.
type envelope struct {
	part [3][]byte // the values of topKeys; nil when absent
	// For each part that is an object, the values of its partKeys.
	req    [6][]byte
	resp   [4][]byte
	cancel [1][]byte
}

// fields returns where the values of part k's members go.
func (e *envelope) fields(k int) [][]byte {
	switch k {
	case partRequest:
		return e.req[:]
	case partResponse:
		return e.resp[:]
	}
	return e.cancel[:]
}

// Decode parses one envelope. On error the returned frame still holds what
// could be read (notably CallID and Kind), and the error is ErrParse or an
// *InvalidError.
func Decode(data []byte, f *Frame) error {
	*f = Frame{}
	var e envelope
	s := scanner{b: data}
	s.ws()
	isObject := s.peek() == '{'
	if isObject {
		s.envelope(&e)
	} else {
		s.value(0)
	}
	s.ws()
	if s.bad || s.i != len(data) {
		return ErrParse
	}
	if !isObject {
		return invalid("frame is not a JSON object")
	}
	req, resp, cancel := nonNull(e.part[partRequest]), nonNull(e.part[partResponse]), nonNull(e.part[partCancel])
	switch {
	case req != nil && resp != nil:
		decodeRequest(req, &e.req, f) // for the call id
		f.Kind = KindInvalid
		return invalid("frame has both a request and a response")
	case req != nil:
		f.Kind = KindRequest
		err := decodeRequest(req, &e.req, f)
		if err == nil && f.Args != nil && s.lend > 0 {
			// The longest string, if it is in the arguments: the binder
			// need not look for its end again. Args is data[off:].
			off := cap(data) - cap(f.Args)
			if st, en := s.lstart-off, s.lend-off; st > 0 && en < len(f.Args) {
				f.Str, f.StrEnd, f.StrEsc = st, en, s.lesc
			}
		}
		return err
	case resp != nil:
		f.Kind = KindResponse
		return decodeResponse(resp, &e.resp, f)
	case cancel != nil:
		f.Kind = KindCancel
		return decodeCancel(cancel, &e.cancel, f)
	}
	return invalid("frame has neither a request nor a response")
}

func nonNull(v []byte) []byte {
	if v == nil || v[0] == 'n' {
		return nil
	}
	return v
}

func decodeRequest(v []byte, fields *[6][]byte, f *Frame) error {
	if v[0] != '{' {
		return invalid("request is not a JSON object")
	}
	method, args, timeout := fields[0], fields[1], fields[3]
	f.CallID = fields[2]
	if err := checkID(f.CallID); err != nil {
		f.CallID = nil
		return err
	}
	if method == nil {
		return invalid("request has no method")
	}
	if method[0] != '"' {
		return invalid("request method is not a string")
	}
	f.Method = unquote(method)
	if len(f.Method) == 0 {
		return invalid("request method is empty")
	}
	if timeout != nil && timeout[0] != 'n' {
		// As json.Unmarshal into an int64: only an integer literal in range.
		ms, err := int64(0), error(nil)
		if c := timeout[0]; c == '-' || c >= '0' && c <= '9' {
			ms, err = strconv.ParseInt(string(timeout), 10, 64)
		} else {
			err = strconv.ErrSyntax
		}
		if err != nil || ms < 0 {
			return invalid("request timeout_ms is not a non-negative integer")
		}
		f.TimeoutMS = ms
	}
	f.TraceParent, f.TraceState = traceField(fields[4]), traceField(fields[5])
	if args != nil && args[0] != 'n' {
		if args[0] != '{' {
			return &InvalidError{Reason: "arguments are not a JSON object", Params: true}
		}
		f.Args = args
	}
	return nil
}

// MaxTraceLen bounds the trace context values a request may carry: a longer
// one is ignored. W3C Trace Context asks that a tracestate of up to 512
// characters be passed on; this leaves room for escapes.
const MaxTraceLen = 1024

// traceField returns the unescaped string of a trace context member, or
// nil when it is absent, not a string, or too long: trace context is a
// hint, and a bad one does not make the request invalid.
func traceField(v []byte) []byte {
	if len(v) < 2 || v[0] != '"' || len(v) > MaxTraceLen+2 {
		return nil
	}
	return unquote(v)
}

func decodeResponse(v []byte, fields *[4][]byte, f *Frame) error {
	if v[0] != '{' {
		return invalid("response is not a JSON object")
	}
	f.Result, f.CallID = fields[0], fields[2]
	typ, errObj := fields[1], fields[3]
	if err := checkID(f.CallID); err != nil {
		f.CallID = nil
		return err
	}
	if typ != nil && typ[0] != 'n' {
		if typ[0] != '"' {
			return invalid("response result_type is not a string")
		}
		f.ResultType = unquote(typ)
	}
	if errObj != nil && errObj[0] != 'n' {
		if errObj[0] != '{' {
			return invalid("response error is not a JSON object")
		}
		f.Error = errObj
	}
	return nil
}

func decodeCancel(v []byte, fields *[1][]byte, f *Frame) error {
	if v[0] != '{' {
		return invalid("cancel is not a JSON object")
	}
	f.CallID = fields[0]
	if err := checkID(f.CallID); err != nil {
		f.CallID = nil
		return err
	}
	if f.CallID == nil || f.CallID[0] == 'n' {
		return invalid("cancel has no call_id")
	}
	return nil
}

// MaxCallIDLen bounds the length of a call id token a peer may send.
const MaxCallIDLen = 256

func checkID(tok []byte) error {
	if tok == nil {
		return nil
	}
	switch c := tok[0]; {
	case c == '"', c == 'n', c == '-', c >= '0' && c <= '9':
	default:
		return invalid("call_id is not a string")
	}
	if len(tok) > MaxCallIDLen {
		return invalid("call_id is longer than %d bytes", MaxCallIDLen)
	}
	return nil
}

// maxDepth is the deepest nesting of arrays and objects accepted, as in
// encoding/json.
const maxDepth = 10000

// scanner is a strict, single-pass JSON scanner (RFC 8259). It validates as
// it goes; on the first error it sets bad and moves to the end of the input,
// where every further step fails at once, so callers need not check after
// each step. Invalid UTF-8 in strings is accepted, as by json.Valid.
type scanner struct {
	b   []byte
	i   int
	bad bool

	// The longest long string token scanned (see strLong): from its
	// opening quote at lstart to lend, after its closing quote; lesc if
	// it has escapes. lcur is the start of the one being scanned.
	lstart, lend, lcur int
	lesc               bool
}

func (s *scanner) fail() {
	s.bad = true
	s.i = len(s.b)
}

// peek returns the byte at the cursor, or 0 at the end.
func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// ws skips whitespace.
func (s *scanner) ws() {
	if s.i < len(s.b) && s.b[s.i] > ' ' {
		return // the common case, inlined
	}
	i := s.i
	for i < len(s.b) && (s.b[i] == ' ' || s.b[i] == '\t' || s.b[i] == '\n' || s.b[i] == '\r') {
		i++
	}
	s.i = i
}

// envelope scans the top-level object into e, scanning the members of
// object-valued parts as it goes.
func (s *scanner) envelope(e *envelope) {
	for more := s.open(1); more; more = s.next() {
		tok, esc := s.key()
		k := find(topKeys, tok, esc)
		if k < 0 {
			s.value(1)
			continue
		}
		start := s.i
		if s.peek() == '{' {
			vals := e.fields(k)
			clear(vals) // a repeated key: the last one counts
			s.object(2, partKeys[k], vals)
		} else {
			s.value(1)
		}
		e.part[k] = s.b[start:s.i]
	}
}

// find returns the index in keys of the key token tok (escaped if esc), or
// -1.
func find(keys []string, tok []byte, esc bool) int {
	if len(keys) == 0 || len(tok) < 2 {
		return -1
	}
	key := tok[1 : len(tok)-1]
	if esc {
		key = unquote(tok)
	}
	for k, name := range keys {
		if string(key) == name {
			return k
		}
	}
	return -1
}

// value scans one value at the cursor, inside depth open arrays and
// objects, and returns its bytes.
func (s *scanner) value(depth int) []byte {
	start := s.i
	switch c := s.peek(); {
	case c == '"':
		s.str()
	case c == '{':
		s.object(depth+1, nil, nil)
	case c == '[':
		s.array(depth + 1)
	case c == 't':
		s.literal("true")
	case c == 'f':
		s.literal("false")
	case c == 'n':
		s.literal("null")
	case c == '-', c >= '0' && c <= '9':
		s.number()
	default:
		s.fail()
	}
	return s.b[start:s.i]
}

// object scans the object at the cursor, at nesting depth depth, and stores
// in vals[k] the value of its (last) member named keys[k].
func (s *scanner) object(depth int, keys []string, vals [][]byte) {
	for more := s.open(depth); more; more = s.next() {
		tok, esc := s.key()
		k := find(keys, tok, esc)
		v := s.value(depth)
		if k >= 0 {
			vals[k] = v
		}
	}
}

// open consumes the '{' of an object at nesting depth depth and reports
// whether a member follows.
func (s *scanner) open(depth int) bool {
	if depth > maxDepth {
		s.fail()
		return false
	}
	s.i++
	s.ws()
	if s.peek() == '}' {
		s.i++
		return false
	}
	return true
}

// key consumes a member's key and colon, and returns the key's token and
// whether it has escapes.
func (s *scanner) key() (tok []byte, esc bool) {
	if s.peek() != '"' {
		s.fail()
		return nil, false
	}
	start := s.i
	esc = s.str()
	tok = s.b[start:s.i]
	s.ws()
	if s.peek() != ':' {
		s.fail()
		return nil, false
	}
	s.i++
	s.ws()
	return tok, esc
}

// next consumes what follows a member and reports whether another follows.
func (s *scanner) next() bool {
	s.ws()
	switch s.peek() {
	case ',':
		s.i++
		s.ws()
		return true
	case '}':
		s.i++
		return false
	}
	s.fail()
	return false
}

func (s *scanner) array(depth int) {
	if depth > maxDepth {
		s.fail()
		return
	}
	s.i++
	s.ws()
	if s.peek() == ']' {
		s.i++
		return
	}
	for {
		s.value(depth)
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
			s.ws()
		case ']':
			s.i++
			return
		default:
			s.fail()
			return
		}
	}
}

func (s *scanner) literal(word string) {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		s.fail()
		return
	}
	s.i += len(word)
}

// number scans a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() {
	b, i := s.b, s.i
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i+1)
	default:
		s.fail()
		return
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			s.fail()
			return
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			s.fail()
			return
		}
		i = j
	}
	s.i = i
}

// digits returns the index of the first non-digit in b at or after i.
func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// longRun is the number of words (of eight bytes) after which str and
// AppendString treat a string as long, and skip its runs of plain bytes in
// bulk with bytes.IndexByte (SIMD): for shorter runs, the calls cost more
// than they save.
const longRun = 8

// str consumes a string token and reports whether it has escapes.
//
// Bytes are tested eight at a time, which suits keys, names and ids; but
// after longRun words, the string is a long one, and strLong carries on.
// (Its one call, to strLong, is a tail call, so that its loop needs no
// spills.)
func (s *scanner) str() (esc bool) {
	b, i := s.b, s.i+1
	end := min(len(b), i+8*longRun)
	for {
		// Skip plain bytes eight at a time.
		for ; ; i += 8 {
			if i+8 > end {
				if end < len(b) {
					s.lcur = s.i
					return s.strLong(i, esc)
				}
				break
			}
			if m := special(binary.LittleEndian.Uint64(b[i:])); m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
		}
		if i >= len(b) {
			s.fail()
			return false
		}
		switch c := b[i]; {
		case c == '"':
			s.i = i + 1
			return esc
		case c == '\\':
			esc = true
			if i+1 >= len(b) {
				s.fail()
				return false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if !isHexEscape(b, i) {
					s.fail()
					return false
				}
				i += 6
			default:
				s.fail()
				return false
			}
		case c < 0x20:
			s.fail()
			return false
		default:
			i++
		}
	}
}

// strLong finishes str for a long string token, from s.b[i] (not inside an
// escape); esc says whether the part before i has escapes. It alternates
// between plainRun, which skips a run of plain bytes in bulk, and
// strSpecial, for the special bytes that follow, which tend to cluster.
func (s *scanner) strLong(i int, esc bool) bool {
	q := -1 // once found, the first '"' at or after i (stale when q < i)
	for {
		if i = plainRun(s.b, i, &q); i < 0 {
			break
		}
		if s.b[i] == '"' {
			s.i = i + 1
			s.longest(esc)
			return esc
		}
		end, e := strSpecial(s.b, i, esc)
		if end > 0 {
			s.i = end
			s.longest(e)
			return e
		}
		if end == 0 {
			break
		}
		i, esc = -end, e
	}
	s.fail()
	return false
}

// longest records the long string token that just ended at s.i, from
// s.lcur, if it is the longest so far.
func (s *scanner) longest(esc bool) {
	if s.i-s.lcur > s.lend-s.lstart {
		s.lstart, s.lend, s.lesc = s.lcur, s.i, esc
	}
}

// strSpecial scans a string token from b[i] (not inside an escape) as str
// does, and returns the index after its closing quote, or 0 if it is not
// valid, and whether it has escapes (esc: the part before i has). But once
// a stretch of longRun words has no escape, it stops at the end of the
// stretch, j, where a long run of plain bytes may go on, and returns -j.
func strSpecial(b []byte, i int, esc bool) (end int, _ bool) {
	lim := min(len(b), i+8*longRun) // the end of the stretch
	last := -1                      // the index of the last escape
	for {
		// Skip plain bytes eight at a time.
		for {
			if i+8 > lim {
				if lim == len(b) {
					break // the last bytes: one at a time below
				}
				if last < lim-8*longRun {
					return -i, esc || last >= 0
				}
				lim = min(len(b), i+8*longRun) // another stretch
				continue
			}
			if m := special(binary.LittleEndian.Uint64(b[i:])); m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		if i >= len(b) {
			return 0, false
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, esc || last >= 0
		case c == '\\':
			last = i
			if i+1 >= len(b) {
				return 0, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if !isHexEscape(b, i) {
					return 0, false
				}
				i += 6
			default:
				return 0, false
			}
		case c < 0x20:
			return 0, false
		default:
			i++
		}
	}
}

// plainRun skips the run of plain bytes in the string at b[i] (not inside
// an escape): it returns the index of the first '"' or '\\' at or after i,
// or -1 if there is none or a control character comes before it. *q is the
// index of the first '"' at or after i, if *q >= i, and is kept updated.
// It finds them with bytes.IndexByte (SIMD), and checks the bytes in
// between with hasControl.
func plainRun(b []byte, i int, q *int) int {
	end := *q
	if end >= i {
		if k := bytes.IndexByte(b[i:end], '\\'); k >= 0 {
			end = i + k
		}
	} else {
		// Look near first: if the closing quote or an escape is there, as
		// is usual, there is no need to look far.
		near := b[i:min(len(b), i+256)]
		run := near
		if k := bytes.IndexByte(near, '\\'); k >= 0 {
			run = near[:k]
		}
		if k := bytes.IndexByte(run, '"'); k >= 0 {
			end = i + k
			*q = end
		} else if len(run) < len(near) {
			end = i + len(run) // the '\\'
		} else {
			j := i + len(near)
			k := bytes.IndexByte(b[j:], '"')
			if k < 0 {
				return -1
			}
			end = j + k
			*q = end
			if k := bytes.IndexByte(b[j:end], '\\'); k >= 0 {
				end = j + k
			}
		}
	}
	if hasControl(b[i:end]) {
		return -1
	}
	return end
}

// isHexEscape reports whether b[i:] starts with a \u escape: \u and four
// hexadecimal digits.
func isHexEscape(b []byte, i int) bool {
	return len(b)-i >= 6 && hexDigit[b[i+2]]&hexDigit[b[i+3]]&hexDigit[b[i+4]]&hexDigit[b[i+5]] != 0
}

// hexDigit is 1 for the hexadecimal digits (a table, so that isHexEscape
// can be inlined).
var hexDigit = func() (t [256]uint8) {
	for c := range t {
		if isHex(byte(c)) {
			t[c] = 1
		}
	}
	return t
}()

// hasControl reports whether b holds a byte < 0x20. Per word x,
// (x - 0x20...) &^ x has a top bit set if and only if some byte is < 0x20
// (the test is exact for the word as a whole, though not for the byte it
// points at).
func hasControl(b []byte) bool {
	if len(b) < 8 {
		for _, c := range b {
			if c < 0x20 {
				return true
			}
		}
		return false
	}
	// The last word first (it may overlap the others), so that only whole
	// words remain below.
	x := binary.LittleEndian.Uint64(b[len(b)-8:])
	acc := (x - lsbs*0x20) &^ x
	i := 0
	for ; i+64 <= len(b); i += 64 {
		w := b[i : i+64]
		x0, x1 := binary.LittleEndian.Uint64(w[0:8]), binary.LittleEndian.Uint64(w[8:16])
		x2, x3 := binary.LittleEndian.Uint64(w[16:24]), binary.LittleEndian.Uint64(w[24:32])
		x4, x5 := binary.LittleEndian.Uint64(w[32:40]), binary.LittleEndian.Uint64(w[40:48])
		x6, x7 := binary.LittleEndian.Uint64(w[48:56]), binary.LittleEndian.Uint64(w[56:64])
		acc |= (x0-lsbs*0x20)&^x0 | (x1-lsbs*0x20)&^x1 | (x2-lsbs*0x20)&^x2 | (x3-lsbs*0x20)&^x3 |
			(x4-lsbs*0x20)&^x4 | (x5-lsbs*0x20)&^x5 | (x6-lsbs*0x20)&^x6 | (x7-lsbs*0x20)&^x7
	}
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i : i+8])
		acc |= (x - lsbs*0x20) &^ x
	}
	return acc&msbs != 0
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

const (
	lsbs = 0x0101010101010101
	msbs = 0x8080808080808080
)

// special returns a mask whose lowest set bit is the high bit of the first
// byte of x (in memory order) that is '"', '\\' or a control character, or
// 0 if there is none. (Bits above the lowest may be false positives.)
func special(x uint64) uint64 {
	q := x ^ (lsbs * '"')
	bs := x ^ (lsbs * '\\')
	return ((q-lsbs)&^q | (bs-lsbs)&^bs | (x-lsbs*0x20)&^x) & msbs
}

// IsObject reports whether b is exactly one valid JSON object, with
// whitespace around it allowed: the form of a call's arguments.
func IsObject(b []byte) bool {
	s := scanner{b: b}
	s.ws()
	if s.peek() != '{' {
		return false
	}
	s.value(0)
	s.ws()
	return !s.bad && s.i == len(b)
}
