package wsrpc

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"
)

// errorLog collects what a connection reports to OnError.
type errorLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *errorLog) hook(_ *Conn, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

func (l *errorLog) has(target error) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.errs {
		if errors.Is(e, target) {
			return true
		}
	}
	return false
}

func (l *errorLog) hasText(text string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.errs {
		if strings.Contains(e.Error(), text) {
			return true
		}
	}
	return false
}

func (l *errorLog) hasPanic(method string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.errs {
		if pe, ok := errors.AsType[*PanicError](e); ok && pe.Method == method && len(pe.Stack) > 0 {
			return true
		}
	}
	return false
}

func badInputMux(block chan struct{}) *Mux {
	m := seedMux()
	Register(m, "explode", func(context.Context, struct{}) (int, error) { panic("kaboom") })
	Register(m, "unencodable", func(context.Context, struct{}) (any, error) { return make(chan int), nil })
	Register(m, "typed", func(_ context.Context, a struct {
		Opts struct {
			Size uint8 `json:"size"`
		} `json:"opts,omitzero"`
		Items []int `json:"items,omitempty"`
	}) (int, error) {
		return int(a.Opts.Size) + len(a.Items), nil
	})
	Register(m, "block", func(ctx context.Context, _ struct{}) (bool, error) {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return true, nil
	})
	return m
}

// TestBadInput sends every kind of bad input to a server, as a raw
// WebSocket client, and checks the error response (code, and the call id
// where there is one), and that the connection still serves calls.
func TestBadInput(t *testing.T) {
	deep := `{"request":{"method":"echo","arguments":{"text":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `},"call_id":"deep"}}`
	tests := []struct {
		name   string
		frame  string
		mt     int
		code   Code  // 0: no answer expected
		callID any   // the call id the answer must carry (nil: null)
		report error // what OnError must have seen, if not nil
	}{
		{"not JSON", "not json", websocket.TextMessage, CodeParseError, nil, ErrBadFrame},
		{"truncated JSON", `{"request": {"method": "echo"`, websocket.TextMessage, CodeParseError, nil, ErrBadFrame},
		{"JSON array", `[1, 2]`, websocket.TextMessage, CodeInvalidRequest, nil, ErrBadFrame},
		{"JSON string", `"request"`, websocket.TextMessage, CodeInvalidRequest, nil, ErrBadFrame},
		{"empty object", `{}`, websocket.TextMessage, CodeInvalidRequest, nil, ErrBadFrame},
		{"neither", `{"request": null, "response": null}`, websocket.TextMessage, CodeInvalidRequest, nil, ErrBadFrame},
		{"both", `{"request": {"method": "echo", "arguments": {"text": "x"}, "call_id": "b1"}, "response": {"result": 1, "call_id": "b1"}}`, websocket.TextMessage, CodeInvalidRequest, "b1", ErrBadFrame},
		{"request not object", `{"request": [1], "response": null}`, websocket.TextMessage, CodeInvalidRequest, nil, ErrBadFrame},
		{"method number", `{"request": {"method": 5, "call_id": "w1"}}`, websocket.TextMessage, CodeInvalidRequest, "w1", ErrBadFrame},
		{"method missing", `{"request": {"arguments": {}, "call_id": "w2"}}`, websocket.TextMessage, CodeInvalidRequest, "w2", ErrBadFrame},
		{"method empty", `{"request": {"method": "", "call_id": "w3"}}`, websocket.TextMessage, CodeInvalidRequest, "w3", ErrBadFrame},
		{"arguments array", `{"request": {"method": "echo", "arguments": ["x"], "call_id": "w4"}}`, websocket.TextMessage, CodeInvalidParams, "w4", ErrBadFrame},
		{"arguments string", `{"request": {"method": "echo", "arguments": "x", "call_id": "w5"}}`, websocket.TextMessage, CodeInvalidParams, "w5", ErrBadFrame},
		{"call_id object", `{"request": {"method": "echo", "arguments": {"text": "x"}, "call_id": {"a": 1}}}`, websocket.TextMessage, CodeInvalidRequest, nil, ErrBadFrame},
		{"call_id bool", `{"request": {"method": "echo", "arguments": {"text": "x"}, "call_id": true}}`, websocket.TextMessage, CodeInvalidRequest, nil, ErrBadFrame},
		{"huge call id", `{"request": {"method": "echo", "arguments": {"text": "x"}, "call_id": "` + strings.Repeat("a", 100000) + `"}}`, websocket.TextMessage, CodeInvalidRequest, nil, ErrBadFrame},
		{"deep nesting", deep, websocket.TextMessage, CodeParseError, nil, ErrBadFrame},
		{"nested wrong type", `{"request": {"method": "echo", "arguments": {"text": [[[[1]]]]}, "call_id": "n1"}}`, websocket.TextMessage, CodeInvalidParams, "n1", nil},
		{"invalid UTF-8", "{\"request\": {\"method\": \"echo\", \"arguments\": {\"text\": \"\xff\xfe\"}, \"call_id\": \"u1\"}}", websocket.TextMessage, CodeParseError, "u1", ErrBadFrame},
		{"unknown method", `{"request": {"method": "no_such", "arguments": {}, "call_id": "m1"}}`, websocket.TextMessage, CodeMethodNotFound, "m1", nil},
		{"private method", `{"request": {"method": "_copy_", "arguments": {}, "call_id": "m2"}}`, websocket.TextMessage, CodeMethodNotFound, "m2", nil},
		{"missing argument", `{"request": {"method": "add", "arguments": {"a": 1}, "call_id": "a1"}}`, websocket.TextMessage, CodeInvalidParams, "a1", nil},
		{"extra argument", `{"request": {"method": "add", "arguments": {"a": 1, "b": 2, "c": 3}, "call_id": "a2"}}`, websocket.TextMessage, CodeInvalidParams, "a2", nil},
		{"wrong argument type", `{"request": {"method": "add", "arguments": {"a": "one", "b": 2}, "call_id": "a3"}}`, websocket.TextMessage, CodeInvalidParams, "a3", nil},
		{"float for int", `{"request": {"method": "count", "arguments": {"n": 1.5}, "call_id": "a4"}}`, websocket.TextMessage, CodeInvalidParams, "a4", nil},
		{"integer overflow", `{"request": {"method": "count", "arguments": {"N": 1e40}, "call_id": "a5"}}`, websocket.TextMessage, CodeInvalidParams, "a5", nil},
		{"nested wrong type in struct", `{"request": {"method": "typed", "arguments": {"opts": {"size": 300}}, "call_id": "t1"}}`, websocket.TextMessage, CodeInvalidParams, "t1", nil},
		{"wrong slice element", `{"request": {"method": "typed", "arguments": {"items": [1, "two"]}, "call_id": "t2"}}`, websocket.TextMessage, CodeInvalidParams, "t2", nil},
		{"handler panics", `{"request": {"method": "explode", "arguments": {}, "call_id": "p1"}}`, websocket.TextMessage, CodeInternalError, "p1", nil},
		{"handler error", `{"request": {"method": "boom", "arguments": {}, "call_id": "p2"}}`, websocket.TextMessage, CodeInternalError, "p2", nil},
		{"unencodable result", `{"request": {"method": "unencodable", "arguments": {}, "call_id": "p3"}}`, websocket.TextMessage, CodeInternalError, "p3", nil},
		{"response to no call", `{"request": null, "response": {"result": 1, "result_type": "int", "call_id": "nobody"}}`, websocket.TextMessage, 0, nil, nil},
		{"broken response", `{"request": null, "response": {"result": 1, "result_type": 7, "call_id": "nobody"}}`, websocket.TextMessage, 0, nil, ErrBadFrame},
		{"cancel without negotiation", `{"cancel": {"call_id": "x"}}`, websocket.TextMessage, 0, nil, nil},
	}
	// The -32602 messages speak of JSON only: the argument, the kind it
	// takes, the kind it got; no Go type, field or package.
	paramMessages := map[string]string{
		"nested wrong type":           `argument "text": expected a string, got an array`,
		"missing argument":            `missing required argument "B"`,
		"extra argument":              `unexpected argument "c"`,
		"wrong argument type":         `argument "a": expected a number, got a string`,
		"float for int":               `argument "n": expected an integer, got number 1.5`,
		"integer overflow":            `argument "N": expected an integer from -9223372036854775808 to 9223372036854775807, got number 1e40`,
		"nested wrong type in struct": `argument "opts.size": expected an integer from 0 to 255, got number 300`,
		"wrong slice element":         `argument "items[1]": expected an integer, got a string`,
	}
	// Internal failures say no more than that.
	internalMessages := map[string]string{
		"handler error":      "internal error",
		"unencodable result": "internal error",
	}
	var log errorLog
	block := make(chan struct{})
	defer close(block)
	_, url := testServer(t, badInputMux(block), &ServerOptions{ConnOptions: ConnOptions{OnError: log.hook}})
	ws := rawDial(t, url)
	// A handler that blocks stays blocked through every bad input below.
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"request": {"method": "block", "arguments": {}, "call_id": "blocked"}}`)); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := ws.WriteMessage(tt.mt, []byte(tt.frame)); err != nil {
				t.Fatal(err)
			}
			if tt.code != 0 {
				got := readRaw(t, ws)
				resp, _ := got["response"].(map[string]any)
				e, _ := resp["error"].(map[string]any)
				if resp == nil || e == nil || e["code"] != float64(tt.code) || resp["result_type"] != "error" {
					t.Fatalf("answer %v, want an error response with code %d", got, tt.code)
				}
				if msg, _ := e["message"].(string); msg == "" || strings.Contains(msg, ".go:") {
					t.Errorf("error message %q: want a reason, without source locations", msg)
				}
				if resp["call_id"] != tt.callID {
					t.Errorf("call_id %v, want %v", resp["call_id"], tt.callID)
				}
				msg, _ := e["message"].(string)
				if want, ok := paramMessages[tt.name]; ok && msg != want {
					t.Errorf("error message %q, want %q", msg, want)
				}
				if want, ok := internalMessages[tt.name]; ok && msg != want {
					t.Errorf("error message %q, want %q", msg, want)
				}
				if tt.code == CodeInvalidParams {
					for _, term := range []string{"wsrpc", "bind.", "main.", "struct", "int64", "float64", "[]", "map[", "Go ", "json:"} {
						if strings.Contains(msg, term) {
							t.Errorf("error message %q names %q", msg, term)
						}
					}
				}
			}
			checkAlive(t, ws)
			if _, ok := paramMessages[tt.name]; ok {
				// The method refused still serves right arguments.
				got := roundTripRaw(t, ws, websocket.TextMessage, `{"request": {"method": "typed", "arguments": {"opts": {"size": 2}, "items": [1, 2, 3]}, "call_id": "ok"}}`)
				if resp, _ := got["response"].(map[string]any); resp == nil || resp["result"] != float64(5) || resp["call_id"] != "ok" {
					t.Errorf("typed call after the error: %v", got)
				}
			}
			if tt.report != nil && !log.has(tt.report) {
				t.Errorf("OnError did not see %v", tt.report)
			}
		})
	}
	if !log.hasPanic("explode") {
		t.Error("OnError did not get a *PanicError with a stack for the panicking handler")
	}
}

// TestBinaryFrameAccepted: a binary frame carrying the JSON is served like a
// text frame (the Python library can be set to binary frames).
func TestBinaryFrameAccepted(t *testing.T) {
	_, url := testServer(t, seedMux(), nil)
	ws := rawDial(t, url)
	got := roundTripRaw(t, ws, websocket.BinaryMessage, `{"request": {"method": "echo", "arguments": {"text": "bin"}, "call_id": "b"}}`)
	if resp, _ := got["response"].(map[string]any); resp == nil || resp["result"] != "bin" {
		t.Fatalf("answer %v", got)
	}
}

// TestBinaryFrameInvalidUTF8: a binary frame is not checked as a whole, so
// invalid UTF-8 in a string argument, short or long, is replaced by U+FFFD
// as encoding/json does, never passed on.
func TestBinaryFrameInvalidUTF8(t *testing.T) {
	_, url := testServer(t, seedMux(), nil)
	ws := rawDial(t, url)
	for _, n := range []int{1, 5000} {
		text := strings.Repeat("a", n) + "\xff" + strings.Repeat("b", n)
		got := roundTripRaw(t, ws, websocket.BinaryMessage, `{"request": {"method": "echo", "arguments": {"text": "`+text+`"}, "call_id": "u"}}`)
		want := strings.Repeat("a", n) + "\uFFFD" + strings.Repeat("b", n)
		if resp, _ := got["response"].(map[string]any); resp == nil || resp["result"] != want {
			t.Fatalf("length %d: answer %.200v, want the text with U+FFFD", n, got)
		}
	}
}

// TestDuplicateCallID: two requests with one call id both run and are both
// answered; neither is lost.
func TestDuplicateCallID(t *testing.T) {
	_, url := testServer(t, seedMux(), nil)
	ws := rawDial(t, url)
	for _, text := range []string{"one", "two"} {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"request": {"method": "echo", "arguments": {"text": "`+text+`"}, "call_id": "dup"}}`)); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[any]bool{}
	for range 2 {
		resp, _ := readRaw(t, ws)["response"].(map[string]any)
		if resp == nil || resp["call_id"] != "dup" {
			t.Fatalf("answer %v", resp)
		}
		seen[resp["result"]] = true
	}
	if !seen["one"] || !seen["two"] {
		t.Errorf("answers %v, want one and two", seen)
	}
}
