package wire

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDecodeForms(t *testing.T) {
	tests := []struct {
		frame  string
		kind   Kind
		method string
		args   string
		id     string // raw token
	}{
		{`{"request": {"method": "m", "arguments": {"a": 1}, "call_id": "x"}, "response": null}`, KindRequest, "m", `{"a": 1}`, `"x"`},
		{`{"request": {"method": "m", "call_id": "x"}}`, KindRequest, "m", "", `"x"`},
		{`{"response": null, "request": {"method": "m", "arguments": null}}`, KindRequest, "m", "", ""},
		{`{"request":{"method":"m\u00e9\n","call_id":null}}`, KindRequest, "mé\n", "", "null"},
		{`  {"request" : { "call_id" : 7 , "method" : "m" } }  `, KindRequest, "m", "", "7"},
		{`{"request": null, "response": {"result": [1, {"a": "]}"}], "result_type": "List", "call_id": "x"}}`, KindResponse, "", "", `"x"`},
		{`{"response": {"result": null, "call_id": "y"}}`, KindResponse, "", "", `"y"`},
		{`{"request": null, "response": null, "cancel": {"call_id": "z"}}`, KindCancel, "", "", `"z"`},
	}
	for _, tt := range tests {
		var f Frame
		if err := Decode([]byte(tt.frame), &f); err != nil {
			t.Errorf("%s: %v", tt.frame, err)
			continue
		}
		if f.Kind != tt.kind || string(f.Method) != tt.method || string(f.Args) != tt.args || string(f.CallID) != tt.id {
			t.Errorf("%s: got kind %v method %q args %q id %q", tt.frame, f.Kind, f.Method, f.Args, f.CallID)
		}
	}
	var f Frame
	Decode([]byte(`{"response": {"result": [1, {"a": "]}"}], "result_type": "List", "call_id": "x", "error": {"code": 1, "message": "m"}}}`), &f)
	if string(f.Result) != `[1, {"a": "]}"}]` || string(f.ResultType) != "List" || string(f.Error) != `{"code": 1, "message": "m"}` {
		t.Errorf("response fields: %q %q %q", f.Result, f.ResultType, f.Error)
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	b := AppendRequest(nil, "mé\"thod", []byte(`{"a":[1,2]}`), "id\n1", 1500, "", "")
	var f Frame
	if err := Decode(b, &f); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if f.Kind != KindRequest || string(f.Method) != "mé\"thod" || string(f.Args) != `{"a":[1,2]}` || f.ID() != "id\n1" || f.TimeoutMS != 1500 ||
		f.TraceParent != nil || f.TraceState != nil {
		t.Errorf("%s decoded to %+v", b, f)
	}
	if bytes.Contains(b, []byte("trace")) {
		t.Errorf("request without trace context has trace members: %s", b)
	}
	const tp, ts = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "vendor=a\"b"
	b = AppendRequest(nil, "m", nil, "c", 0, tp, ts)
	if err := Decode(b, &f); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if string(f.TraceParent) != tp || string(f.TraceState) != ts || f.TimeoutMS != 0 {
		t.Errorf("%s decoded to traceparent %q tracestate %q", b, f.TraceParent, f.TraceState)
	}
	// The arguments in two parts make the frame the whole arguments make;
	// none at all are {}.
	whole := AppendRequest(nil, "notify", []byte(`{"s": {"id": "x"}, "data": [1]}`), "c", 0, "", "")
	if parts := AppendRequestParts(nil, "notify", []byte(`{"s": {"id": "x"`), []byte(`}, "data": [1]}`), "c", 0, "", ""); !bytes.Equal(parts, whole) {
		t.Errorf("AppendRequestParts: %s, want %s", parts, whole)
	}
	if err := Decode(AppendRequestParts(nil, "m", nil, nil, "c", 0, "", ""), &f); err != nil || string(f.Args) != "{}" {
		t.Errorf("no arguments: %q, %v", f.Args, err)
	}
	b = AppendResponseEnd(append(AppendResponseStart(nil), `{"x":1}`...), "Point", []byte(`"c1"`))
	var env map[string]any
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	want := map[string]any{"request": nil, "response": map[string]any{"result": map[string]any{"x": 1.0}, "result_type": "Point", "call_id": "c1"}}
	if !reflect.DeepEqual(env, want) {
		t.Errorf("response %s", b)
	}
	b = AppendError(nil, nil, -32601, "method not found: x", []byte(`[1]`))
	json.Unmarshal(b, &env)
	want = map[string]any{"request": nil, "response": map[string]any{"result": nil, "result_type": "error", "call_id": nil,
		"error": map[string]any{"code": -32601.0, "message": "method not found: x", "data": []any{1.0}}}}
	if !reflect.DeepEqual(env, want) {
		t.Errorf("error %s", b)
	}
	b = AppendCancel(nil, "c9")
	if err := Decode(b, &f); err != nil || f.Kind != KindCancel || f.ID() != "c9" {
		t.Errorf("cancel %s: %+v %v", b, f, err)
	}
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", "quote\"back\\slash", "ctl\x00\x01\x1f\t\r\n", "é ü 日本", "\u2028\u2029", "bad\xff\xfeutf8", "<&>"} {
		var got string
		enc := AppendString(nil, s)
		if err := json.Unmarshal(enc, &got); err != nil {
			t.Errorf("%q: %s is not JSON: %v", s, enc, err)
			continue
		}
		var want string
		std, _ := json.Marshal(s)
		json.Unmarshal(std, &want)
		if got != want {
			t.Errorf("%q: round trip %q", s, got)
		}
	}
}

var hex32 = regexp.MustCompile(`^[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}$`)

func TestNewCallID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewCallID()
		if !hex32.MatchString(id) {
			t.Fatalf("%q is not the hex of a version 4 UUID", id)
		}
		if seen[id] {
			t.Fatalf("%q repeated", id)
		}
		seen[id] = true
	}
}

// FuzzDecode: any input either decodes or fails with one of the two
// decoding errors; it never panics, and what decodes is consistent.
func FuzzDecode(f *testing.F) {
	file, err := os.Open("../../testdata/seed-vectors.jsonl")
	if err != nil {
		f.Fatal(err)
	}
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		var v struct{ Frame *string }
		if json.Unmarshal(sc.Bytes(), &v) == nil && v.Frame != nil {
			f.Add([]byte(*v.Frame))
		}
	}
	file.Close()
	f.Add([]byte(`{"request":null,"response":null,"cancel":{"call_id":"x"}}`))
	f.Add([]byte(`{"request":{"method":"m","arguments":[],"call_id":{}}}`))
	for _, s := range strictCases {
		f.Add([]byte(s))
	}
	for _, s := range traceCases {
		f.Add([]byte(s))
	}
	for _, s := range longStrings {
		f.Add([]byte(`{"request":{"method":"` + s + `","arguments":{"text":"` + s + `"}}}`))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var fr Frame
		err := Decode(data, &fr)
		if err != nil {
			if _, ok := err.(*InvalidError); !ok && err != ErrParse {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			if err == ErrParse && json.Valid(data) {
				t.Fatalf("valid JSON reported as a parse error: %q", data)
			}
			if err != ErrParse && !json.Valid(data) {
				t.Fatalf("invalid JSON not reported as a parse error: %q: %v", data, err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("invalid JSON decoded: %q", data)
		}
		switch fr.Kind {
		case KindRequest:
			if len(fr.Method) == 0 {
				t.Fatal("request without method")
			}
			if fr.Args != nil && (fr.Args[0] != '{' || !json.Valid(fr.Args)) {
				t.Fatalf("args %q", fr.Args)
			}
			if fr.StrEnd > 0 {
				// The recorded string is a whole string token in Args.
				if fr.Str <= 0 || fr.StrEnd >= len(fr.Args) || fr.Str >= fr.StrEnd {
					t.Fatalf("string at [%d:%d] in args of %d bytes", fr.Str, fr.StrEnd, len(fr.Args))
				}
				tok := fr.Args[fr.Str:fr.StrEnd]
				var str string
				if tok[0] != '"' || json.Unmarshal(tok, &str) != nil {
					t.Fatalf("string at [%d:%d] is not a string token: %q", fr.Str, fr.StrEnd, tok)
				}
				if fr.StrEsc != bytes.Contains(tok, []byte{'\\'}) {
					t.Fatalf("string %q: StrEsc %v", tok, fr.StrEsc)
				}
			} else if fr.Str != 0 || fr.StrEsc {
				t.Fatalf("no string recorded, but Str %d StrEsc %v", fr.Str, fr.StrEsc)
			}
		case KindResponse:
			if fr.Result != nil && !json.Valid(fr.Result) {
				t.Fatalf("result %q", fr.Result)
			}
		case KindCancel:
			if len(fr.CallID) == 0 {
				t.Fatal("cancel without id")
			}
		default:
			t.Fatalf("no kind for %q", data)
		}
		if fr.CallID != nil && !json.Valid(fr.CallID) {
			t.Fatalf("call id %q", fr.CallID)
		}
		if !utf8.Valid(fr.Method) && utf8.Valid(data) {
			t.Fatalf("method %q", fr.Method)
		}
	})
}

// longStrings are string token contents long enough for bulk scanning,
// valid or not, with special bytes after runs of plain ones.
var longStrings = []string{
	strings.Repeat("abcdefgh", 20) + `\"` + strings.Repeat("x", 70) + `\n` + strings.Repeat("y", 70) + "é\u2028",
	strings.Repeat("a", 100) + "\x01" + strings.Repeat("b", 100),
	strings.Repeat("a", 70) + `\"\\\"` + strings.Repeat("b", 70) + `\u00e9\ud800` + strings.Repeat("c", 10),
	strings.Repeat("a", 80) + `\u12G4` + strings.Repeat("b", 80),
	strings.Repeat("a", 90) + "\xff\xfe" + strings.Repeat("b", 90) + `\`,
}

// strictCases are JSON texts, valid or not, at the edges of the grammar.
var strictCases = []string{
	``, ` `, `{`, `}`, `{}`, `{} `, `{}{}`, `{} x`, `[]`, `[1,]`, `[,1]`, `[1 2]`, `{"a":1,}`, `{,"a":1}`, `{"a" 1}`,
	`{"a":}`, `{a:1}`, `{'a':1}`, `{"a":1 "b":2}`, `{"a":[}`, `{"a":{]}`, `"x"`, `"x`, `"\"`, `"\x"`, `"\u12"`,
	`"\u12G4"`, `"\uABCDx"`, `"\/\b\f\n\r\t\"\\"`, "\"\x00\"", "\"\x1f\"", "\"\x7f\"", "\"\xff\xfe\"", "\"a\tb\"",
	`0`, `-0`, `-`, `01`, `-01`, `1.`, `.5`, `1.5`, `1e`, `1e+`, `1e+5`, `1E-5`, `1.5e5`, `+1`, `0x1`, `1_000`,
	`Infinity`, `NaN`, `true`, `tru`, `truex`, `false`, `null`, `nul`, `nulll`, `True`, "\ufeff{}", "{}\x00",
	" \t\r\n{ \t\r\n\"a\" \t\r\n: \t\r\n1 \t\r\n} \t\r\n", "\v{}", "\f{}", "{\"a\":1}\u00a0",
	`{"request":{"method":"m","arguments":{"a":[1,{"b":"]}\""}]}}}`,
	`{"request":{"method":"m","arguments":{"a":[1,{"b":"]}\""}]}}}}`,
	`{"request":{"method":"m\u0000\ud800"},"request":{"method":"n"}}`,
	`{"request":{"method":"m","call_id":"a"},"request":{"method":"n"}}`,
	`{"re\u0071uest":{"method":"m","call_\u0069d":"x"}}`,
	`{"request":{"method":"m","timeout_ms":1.5}}`, `{"request":{"method":"m","timeout_ms":-0}}`,
	`{"request":{"method":"m","timeout_ms":9223372036854775808}}`, `{"request":{"method":"m","timeout_ms":"5"}}`,
	`{"request":{"method":"m","timeout_ms":1e3}}`,
}

// traceCases carry trace context members, well formed or not.
var traceCases = []string{
	`{"request":{"method":"m","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","tracestate":"a=1"}}`,
	`{"request":{"method":"m","traceparent":5,"tracestate":null}}`,
	`{"request":{"method":"m","traceparent":"\u0030\u0030-x","tracestate":["a=1"]}}`,
	`{"request":{"traceparent":"00-x","method":"m","traceparent":"00-y"}}`,
	`{"request":{"traceparent":"00-x"}}`,
	`{"request":{"method":"m","tracestate":"` + strings.Repeat("k=v,", MaxTraceLen/4+1) + `"}}`,
}

// TestTraceFields checks which trace context members a request keeps: a
// string of at most MaxTraceLen bytes, unescaped; anything else is ignored
// without making the request invalid.
func TestTraceFields(t *testing.T) {
	tests := []struct{ frame, parent, state string }{
		{traceCases[0], "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "a=1"},
		{traceCases[1], "", ""},
		{traceCases[2], "00-x", ""},
		{traceCases[3], "00-y", ""},
		{traceCases[5], "", ""},
		{`{"request":{"method":"m","tracestate":"` + strings.Repeat("k", MaxTraceLen) + `"}}`, "", strings.Repeat("k", MaxTraceLen)},
		{`{"response":{"result":1,"traceparent":"00-x"}}`, "", ""},
	}
	for _, tt := range tests {
		var f Frame
		if err := Decode([]byte(tt.frame), &f); err != nil {
			t.Errorf("%.80s: %v", tt.frame, err)
			continue
		}
		if string(f.TraceParent) != tt.parent || string(f.TraceState) != tt.state {
			t.Errorf("%.80s: traceparent %q tracestate %.20q, want %q %.20q", tt.frame, f.TraceParent, f.TraceState, tt.parent, tt.state)
		}
	}
	var f Frame
	if err := Decode([]byte(traceCases[4]), &f); err == nil {
		t.Errorf("a request with trace context but no method decoded")
	}
}

func TestStrict(t *testing.T) {
	for _, s := range strictCases {
		var f Frame
		err := Decode([]byte(s), &f)
		if (err == ErrParse) != !json.Valid([]byte(s)) {
			t.Errorf("%q: %v, json.Valid %v", s, err, json.Valid([]byte(s)))
		}
	}
	// Long strings, with the special bytes at every offset of a word.
	for n := range 20 {
		for _, c := range []string{"a", "é", `\"`, `\\`, `\u00e9`, "\x00", "\x1f", `"`, `\`} {
			s := `{"request":{"method":"` + strings.Repeat("m", n) + c + strings.Repeat("x", 20-n) + `"}}`
			var f Frame
			err := Decode([]byte(s), &f)
			if (err == ErrParse) != !json.Valid([]byte(s)) {
				t.Errorf("%q: %v, json.Valid %v", s, err, json.Valid([]byte(s)))
			}
			if err == nil {
				var want struct{ Request struct{ Method string } }
				json.Unmarshal([]byte(s), &want)
				if string(f.Method) != want.Request.Method {
					t.Errorf("%q: method %q", s, f.Method)
				}
			}
		}
	}
}

func TestDepth(t *testing.T) {
	for _, n := range []int{maxDepth - 2, maxDepth - 1, maxDepth, maxDepth + 1} {
		for _, open := range []string{"[", `{"a":`} {
			close := "]"
			if open != "[" {
				close = "}"
			}
			inner := strings.Repeat(open, n) + strings.Repeat(close, n)
			for _, s := range []string{inner, `{"request":{"method":"m","arguments":{"a":` + inner + `}}}`} {
				var f Frame
				err := Decode([]byte(s), &f)
				if (err == ErrParse) != !json.Valid([]byte(s)) {
					t.Errorf("depth %d %s: %v, json.Valid %v", n, open, err, json.Valid([]byte(s)))
				}
			}
		}
	}
}

func TestDecodeAllocs(t *testing.T) {
	frame := benchFrame(16)
	var f Frame
	if n := testing.AllocsPerRun(100, func() { Decode(frame, &f) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

func TestIsObject(t *testing.T) {
	for in, want := range map[string]bool{
		`{}`: true, ` {"a": [1, {"b": null}]} `: true, `{"a":1}{}`: false, `[1]`: false, `{"a":}`: false,
		`{"a":1`: false, ``: false, `null`: false, `"{}"`: false, "{\"a\":\"\x01\"}": false,
	} {
		if got := IsObject([]byte(in)); got != want {
			t.Errorf("IsObject(%q) = %v, want %v", in, got, want)
		}
	}
}

// FuzzAppendString: AppendString writes what encoding/json writes, up to
// the HTML escapes that encoding/json adds and wsrpc does not need.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain ascii text, long enough for words", "quote\"back\\slash", "ctl\x00\x1f", "é ü 日本", "\u2028\u2029x", "bad\xff\xfeutf8", "12345678\"12345678\x7f"} {
		f.Add(s)
	}
	for _, s := range longStrings {
		f.Add(s)
		var u string
		if json.Unmarshal([]byte(`"`+s+`"`), &u) == nil {
			f.Add(u)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		var got, want string
		enc := AppendString(nil, s)
		if err := json.Unmarshal(enc, &got); err != nil {
			t.Fatalf("%q: %s is not JSON: %v", s, enc, err)
		}
		std, _ := json.Marshal(s)
		json.Unmarshal(std, &want)
		if got != want {
			t.Fatalf("%q: AppendString round trip %q, encoding/json %q", s, got, want)
		}
	})
}

func BenchmarkAppendString16K(b *testing.B) {
	s := strings.Repeat("abcdefghijklmnop", 1024)
	buf := make([]byte, 0, 20<<10)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		buf = AppendString(buf[:0], s)
	}
}

// TestLongStrings: strings long enough for the bulk scanning of str and
// AppendString, with special bytes at every offset around its switch.
func TestLongStrings(t *testing.T) {
	specials := []string{"a", "é", `\"`, `\\`, `\/`, `\u00e9`, `\n`, "\x00", "\x1f", "\x7f", `"`, `\`, `\x`, `\u12`, `\u12G4`,
		"\xff", "\xe2\x80", "\u2028", "\u2029", "\t"}
	for n := range 100 {
		for _, c := range specials {
			for _, c2 := range []string{"", `\"`, "\x01", `\\`, "\u2029", "é"} {
				body := strings.Repeat("m", n) + c + strings.Repeat("x", 70) + c2 + strings.Repeat("y", 70)
				if n%4 == 0 { // a run longer than plainRun looks at first
					body += strings.Repeat("z", 300) + c + strings.Repeat("z", 300) + c2
				}
				for _, s := range []string{
					`{"request":{"method":"` + body + `"}}`,
					`{"request":{"method":"` + body + `","call_id":"a\"b\\"}}`, // escapes soon after the end
				} {
					var f Frame
					err := Decode([]byte(s), &f)
					if (err == ErrParse) != !json.Valid([]byte(s)) {
						t.Fatalf("%q: %v, json.Valid %v", s, err, json.Valid([]byte(s)))
					}
					if err == nil {
						var want struct{ Request struct{ Method string } }
						json.Unmarshal([]byte(s), &want)
						if string(f.Method) != want.Request.Method && utf8.Valid(f.Method) {
							t.Fatalf("%q: method %q", s, f.Method)
						}
					}
				}
				var got, want string
				enc := AppendString(nil, body)
				if err := json.Unmarshal(enc, &got); err != nil {
					t.Fatalf("%q: %s is not JSON: %v", body, enc, err)
				}
				std, _ := json.Marshal(body)
				json.Unmarshal(std, &want)
				if got != want {
					t.Fatalf("%q: AppendString round trip %q, encoding/json %q", body, got, want)
				}
			}
		}
	}
}

func TestHasControl(t *testing.T) {
	for n := range 150 {
		for p := -1; p < n; p++ {
			for _, c := range []byte{0, 0x01, 0x1f, 0x20, 0x7f, 0x80, 0x9f, 0xff} {
				b := []byte(strings.Repeat("a", n))
				if p >= 0 {
					b[p] = c
				}
				if want := p >= 0 && c < 0x20; hasControl(b) != want {
					t.Fatalf("hasControl(%q) = %v", b, !want)
				}
				s := string(b)
				want := len(s)
				for i := range len(s) {
					if s[i] < 0x20 || s[i] >= 0x80 {
						want = i
						break
					}
				}
				if got := plainPrefix(s); got != want {
					t.Fatalf("plainPrefix(%q) = %d, want %d", s, got, want)
				}
			}
		}
	}
}

// TestLongStringHint: the longest long string of a request's arguments is
// recorded, with its escapes, for the binder; one outside them is not.
func TestLongStringHint(t *testing.T) {
	long := strings.Repeat("x", 100)
	for _, tt := range []struct {
		frame, want string
		esc         bool
	}{
		{`{"request": {"method": "echo", "arguments": {"text": "` + long + `"}, "call_id": "1"}}`, `"` + long + `"`, false},
		{`{"request": {"method": "echo", "arguments": {"a": "short", "text": "` + long + `\n"}}}`, `"` + long + `\n"`, true},
		{`{"request": {"method": "echo", "arguments": {"text": "short"}, "call_id": "` + long + `"}}`, "", false},
		{`{"request": {"method": "echo", "arguments": {"a": "` + long + `", "b": "` + long + long + `"}}}`, `"` + long + long + `"`, false},
	} {
		var f Frame
		if err := Decode([]byte(tt.frame), &f); err != nil {
			t.Fatalf("%s: %v", tt.frame, err)
		}
		got := ""
		if f.StrEnd > 0 {
			got = string(f.Args[f.Str:f.StrEnd])
		}
		if got != tt.want || f.StrEsc != tt.esc {
			t.Errorf("%.60s...: string %q esc %v, want %q esc %v", tt.frame, got, f.StrEsc, tt.want, tt.esc)
		}
	}
}
