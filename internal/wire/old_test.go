package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
)

// Decode parses one envelope. On error the returned frame still holds what
// could be read (notably CallID and Kind), and the error is ErrParse or an
// *InvalidError.
func oldDecode(data []byte, f *Frame) error {
	*f = Frame{}
	if !json.Valid(data) {
		return ErrParse
	}
	s := oldScanner{b: data}
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
	req, resp, cancel = oldNonNull(req), oldNonNull(resp), oldNonNull(cancel)
	switch {
	case req != nil && resp != nil:
		oldDecodeRequest(req, f) // for the call id
		f.Kind = KindInvalid
		return invalid("frame has both a request and a response")
	case req != nil:
		f.Kind = KindRequest
		return oldDecodeRequest(req, f)
	case resp != nil:
		f.Kind = KindResponse
		return oldDecodeResponse(resp, f)
	case cancel != nil:
		f.Kind = KindCancel
		return oldDecodeCancel(cancel, f)
	}
	return invalid("frame has neither a request nor a response")
}

func oldNonNull(v []byte) []byte {
	if v == nil || v[0] == 'n' {
		return nil
	}
	return v
}

func oldDecodeRequest(v []byte, f *Frame) error {
	if v[0] != '{' {
		return invalid("request is not a JSON object")
	}
	s := oldScanner{b: v}
	var method, args []byte
	var timeout, parent, state []byte
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
		case "traceparent":
			parent = val
		case "tracestate":
			state = val
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
	f.TraceParent, f.TraceState = oldTrace(parent), oldTrace(state)
	if args != nil && args[0] != 'n' {
		if args[0] != '{' {
			return &InvalidError{Reason: "arguments are not a JSON object", Params: true}
		}
		f.Args = args
	}
	return nil
}

func oldDecodeResponse(v []byte, f *Frame) error {
	if v[0] != '{' {
		return invalid("response is not a JSON object")
	}
	s := oldScanner{b: v}
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

func oldDecodeCancel(v []byte, f *Frame) error {
	if v[0] != '{' {
		return invalid("cancel is not a JSON object")
	}
	s := oldScanner{b: v}
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

// oldScanner walks JSON that json.Valid has accepted, so it checks little.
type oldScanner struct {
	b []byte
	i int
}

func (s *oldScanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *oldScanner) ws() {
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
func (s *oldScanner) object(fn func(key []byte)) {
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
func (s *oldScanner) str() []byte {
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
func (s *oldScanner) value() []byte {
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

// FuzzOldDecode: on valid JSON, Decode does what it did before.
func oldTrace(v []byte) []byte {
	if v == nil || v[0] != '"' || len(v) > MaxTraceLen+2 {
		return nil
	}
	return unquote(v)
}

func FuzzOldDecode(f *testing.F) {
	for _, s := range strictCases {
		f.Add([]byte(s))
	}
	for _, s := range longStrings {
		f.Add([]byte(`{"request":{"method":"m` + s + `","arguments":{"` + s + `":"` + s + `"},"call_id":"` + s + `"}}`))
	}
	f.Add([]byte(`{"request": {"method": "echo", "arguments": {"text": "x"}, "call_id": "8a4f"}, "response": null}`))
	f.Add([]byte(`{"request": null, "response": {"result": [1, {"a": "]}"}], "result_type": "List", "call_id": "x", "error": {"code": 1}}}`))
	f.Add([]byte(`{"request": null, "response": null, "cancel": {"call_id": 5}}`))
	for _, s := range traceCases {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) {
			return
		}
		var got, want Frame
		errGot, errWant := Decode(data, &got), oldDecode(data, &want)
		// The long-string hint is Decode's alone (the old one recorded
		// none): it must point at a JSON string in Args, escaped as it says.
		if got.StrEnd != 0 {
			tok := got.Args[got.Str:got.StrEnd]
			var str string
			if err := json.Unmarshal(tok, &str); err != nil || tok[0] != '"' {
				t.Fatalf("%q: the hint %d:%d is %q, not a JSON string", data, got.Str, got.StrEnd, tok)
			}
			if esc := bytes.IndexByte(tok, '\\') >= 0; esc != got.StrEsc {
				t.Fatalf("%q: the hint's string %q has escapes %v, StrEsc %v", data, tok, esc, got.StrEsc)
			}
			got.Str, got.StrEnd, got.StrEsc = 0, 0, false
		}
		if fmt.Sprint(errGot) != fmt.Sprint(errWant) || !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\n got %+v %v\nwant %+v %v", data, got, errGot, want, errWant)
		}
	})
}
