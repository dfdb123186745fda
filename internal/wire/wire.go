// Package wire encodes and decodes the envelope of the fastapi_websocket_rpc
// wire protocol (see PROTOCOL.md at the repository root), plus wsrpc's
// negotiated extensions.
//
// Decoding does not copy: the byte slices of a decoded [Frame] alias the
// input, which must stay unchanged while the frame is in use.
package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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
	Method    []byte // unescaped
	Args      []byte // raw JSON object; nil when absent or null
	TimeoutMS int64  // extension "timeout_ms": the caller's remaining time; 0 if none

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

// Decode parses one envelope. On error the returned frame still holds what
// could be read (notably CallID and Kind), and the error is ErrParse or an
// *InvalidError.
func Decode(data []byte, f *Frame) error {
	*f = Frame{}
	if !json.Valid(data) {
		return ErrParse
	}
	s := scanner{b: data}
	s.ws()
	if s.peek() != '{' {
		return invalid("frame is not a JSON object")
	}
	var req, resp, cancel []byte
	s.object(func(key []byte) {
		v := s.value()
		switch string(key) {
		case "request":
			req = v
		case "response":
			resp = v
		case "cancel":
			cancel = v
		}
	})
	req, resp, cancel = nonNull(req), nonNull(resp), nonNull(cancel)
	switch {
	case req != nil && resp != nil:
		decodeRequest(req, f) // for the call id
		f.Kind = KindInvalid
		return invalid("frame has both a request and a response")
	case req != nil:
		f.Kind = KindRequest
		return decodeRequest(req, f)
	case resp != nil:
		f.Kind = KindResponse
		return decodeResponse(resp, f)
	case cancel != nil:
		f.Kind = KindCancel
		return decodeCancel(cancel, f)
	}
	return invalid("frame has neither a request nor a response")
}

func nonNull(v []byte) []byte {
	if v == nil || v[0] == 'n' {
		return nil
	}
	return v
}

func decodeRequest(v []byte, f *Frame) error {
	if v[0] != '{' {
		return invalid("request is not a JSON object")
	}
	s := scanner{b: v}
	var method, args []byte
	var timeout []byte
	s.object(func(key []byte) {
		val := s.value()
		switch string(key) {
		case "method":
			method = val
		case "arguments":
			args = val
		case "call_id":
			f.CallID = val
		case "timeout_ms":
			timeout = val
		}
	})
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
		var ms int64
		if err := json.Unmarshal(timeout, &ms); err != nil || ms < 0 {
			return invalid("request timeout_ms is not a non-negative integer")
		}
		f.TimeoutMS = ms
	}
	if args != nil && args[0] != 'n' {
		if args[0] != '{' {
			return &InvalidError{Reason: "arguments are not a JSON object", Params: true}
		}
		f.Args = args
	}
	return nil
}

func decodeResponse(v []byte, f *Frame) error {
	if v[0] != '{' {
		return invalid("response is not a JSON object")
	}
	s := scanner{b: v}
	var typ, errObj []byte
	s.object(func(key []byte) {
		val := s.value()
		switch string(key) {
		case "result":
			f.Result = val
		case "result_type":
			typ = val
		case "call_id":
			f.CallID = val
		case "error":
			errObj = val
		}
	})
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

func decodeCancel(v []byte, f *Frame) error {
	if v[0] != '{' {
		return invalid("cancel is not a JSON object")
	}
	s := scanner{b: v}
	s.object(func(key []byte) {
		val := s.value()
		if string(key) == "call_id" {
			f.CallID = val
		}
	})
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

// scanner walks JSON that json.Valid has accepted, so it checks little.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// object calls fn for each key of the object at the cursor, with the cursor
// on the key's value; fn must consume the value.
func (s *scanner) object(fn func(key []byte)) {
	s.ws()
	s.i++ // '{'
	for {
		s.ws()
		if s.peek() == '}' || s.i >= len(s.b) {
			s.i++
			return
		}
		if s.peek() == ',' {
			s.i++
			s.ws()
		}
		key := unquote(s.str())
		s.ws()
		s.i++ // ':'
		s.ws()
		fn(key)
	}
}

// str consumes a string token and returns it with its quotes.
func (s *scanner) str() []byte {
	start := s.i
	s.i++
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '\\':
			s.i += 2
			continue
		case '"':
			s.i++
			return s.b[start:s.i]
		}
		s.i++
	}
	return s.b[start:s.i]
}

// value consumes one value and returns its raw bytes.
func (s *scanner) value() []byte {
	s.ws()
	start := s.i
	switch s.peek() {
	case '"':
		return s.str()
	case '{', '[':
		depth := 0
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				s.str()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return s.b[start:s.i]
				}
			}
			s.i++
		}
	default:
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return s.b[start:s.i]
			}
			s.i++
		}
	}
	return s.b[start:s.i]
}

// Keys calls fn with each key of obj, a JSON object that Decode accepted
// (for example a request's Args), unescaped.
func Keys(obj []byte, fn func(key []byte)) {
	s := scanner{b: obj}
	s.object(func(key []byte) {
		fn(key)
		s.value()
	})
}
