package bind

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/wsrpc/wsrpc/internal/wire"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
	"unsafe"
)

type myString string
type myInt int8

// upper is a string kind with a TextUnmarshaler: it must not take the fast
// path.
type upper string

func (u *upper) UnmarshalText(b []byte) error {
	if bytes.ContainsRune(b, '!') {
		return errors.New("upper: no !")
	}
	*u = upper(strings.ToUpper(string(b)))
	return nil
}

// custom has a json.Unmarshaler that fails on false: a hard error.
type custom struct{ Raw string }

func (c *custom) UnmarshalJSON(b []byte) error {
	if string(b) == "false" {
		return errors.New("custom: no false")
	}
	c.Raw = string(b)
	return nil
}

type inner struct {
	X int      `json:"x"`
	Y []string `json:"y,omitempty"`
}

type Embedded struct {
	E1 string `json:"e1,omitempty"`
	E2 int16  `json:"e2,omitempty"`
}

type EmbPtr struct {
	Q1 *int   `json:"q1,omitempty"`
	Q2 []bool `json:"q2,omitempty"`
}

type embPtr struct {
	P1 string `json:"p1,omitempty"`
}

// kinds has a field of every kind the binder handles, all optional.
type kinds struct {
	S     string          `json:"s,omitempty"`
	B     bool            `json:"b,omitempty"`
	I     int             `json:"i,omitempty"`
	I8    int8            `json:"i8,omitempty"`
	I16   int16           `json:"i16,omitempty"`
	I32   int32           `json:"i32,omitempty"`
	I64   int64           `json:"i64,omitempty"`
	U     uint            `json:"u,omitempty"`
	U8    uint8           `json:"u8,omitempty"`
	U16   uint16          `json:"u16,omitempty"`
	U32   uint32          `json:"u32,omitempty"`
	U64   uint64          `json:"u64,omitempty"`
	UP    uintptr         `json:"up,omitempty"`
	F32   float32         `json:"f32,omitempty"`
	F64   float64         `json:"f64,omitempty"`
	PS    *string         `json:"ps"`
	PI    *int            `json:"pi"`
	PU8   *uint8          `json:"pu8"`
	PF    *float32        `json:"pf"`
	PB    *bool           `json:"pb"`
	MS    myString        `json:"ms,omitempty"`
	MI    myInt           `json:"mi,omitempty"`
	PMS   *myString       `json:"pms"`
	Plain string          `json:",omitempty"`
	Raw   json.RawMessage `json:"raw,omitempty"`
	Any   any             `json:"any,omitempty"`
	Ints  []int           `json:"ints,omitempty"`
	Map   map[string]int  `json:"map,omitempty"`
	Inner inner           `json:"inner,omitzero"`
	PIn   *inner          `json:"pin"`
	Up    upper           `json:"upper,omitempty"`
	PUp   *upper          `json:"pupper"`
	C     custom          `json:"c,omitzero"`
	N     json.Number     `json:"n,omitempty"`
	Bytes []byte          `json:"bytes,omitempty"`
	Arr   [2]int          `json:"arr,omitzero"`
	Skip  int             `json:"-"`
	hide  int
	Embedded
	*EmbPtr
	*embPtr
}

// kindsNames are the argument names of kinds.
var kindsNames = []string{"s", "b", "i", "i8", "i16", "i32", "i64", "u", "u8", "u16", "u32", "u64", "up", "f32", "f64",
	"ps", "pi", "pu8", "pf", "pb", "ms", "mi", "pms", "Plain", "raw", "any", "ints", "map", "inner", "pin", "upper",
	"pupper", "c", "n", "bytes", "arr", "e1", "e2", "q1", "q2", "p1"}

// fast has only fields the binder decodes itself.
type fast struct {
	S   string   `json:"s,omitempty"`
	B   bool     `json:"b,omitempty"`
	I   int      `json:"i,omitempty"`
	I8  int8     `json:"i8,omitempty"`
	U16 uint16   `json:"u16,omitempty"`
	U64 uint64   `json:"u64,omitempty"`
	F32 float32  `json:"f32,omitempty"`
	F64 float64  `json:"f64,omitempty"`
	PS  *string  `json:"ps"`
	PF  *float64 `json:"pf"`
	MS  myString `json:"ms,omitempty"`
	Embedded
}

var fastNames = []string{"s", "b", "i", "i8", "u16", "u64", "f32", "f64", "ps", "pf", "ms", "e1", "e2"}

// wantMessage is the message for err, the error of json.Unmarshal of data
// into b's type: the binder must report the same.
func wantMessage(b *Binder, data []byte, err error) string {
	return b.wholeError(err, data).Error()
}

var seeds = []string{
	`{}`,
	` { "s" : "x" , "i" : 1 , "b" : true } `,
	`{"s":"a\u00e9\ud83d\ude00\ud800x\udc00\\\"\/\b\f\n\r\tz","ms":"\ud800\ud800","Plain":"\udc00\ud800\udc00"}`,
	"{\"s\":\"bad \xff\xfe utf8 \xe2\x82 \xed\xa0\x80 ok \xe6\x97\xa5\"}",
	"{\"s\":\"\xff\\n\"}",
	`{"s":"ab\"cd","ms":"日本語 text that is longer than eight bytes"}`,
	`{"i":9223372036854775807,"i64":-9223372036854775808,"u64":18446744073709551615,"up":1}`,
	`{"i":9223372036854775808}`,
	`{"u64":18446744073709551616}`,
	`{"i64":-9223372036854775809}`,
	`{"i8":127,"mi":-128,"u8":255,"u16":65535,"u32":4294967295,"i16":-32768,"i32":2147483647}`,
	`{"i8":128}`,
	`{"mi":-129}`,
	`{"u8":256}`,
	`{"u8":-0}`,
	`{"u":-1}`,
	`{"i":-0,"f64":-0,"f32":-0.0,"pf":-0}`,
	`{"i":1.0}`,
	`{"i":1e2}`,
	`{"i":1E+2}`,
	`{"f32":1e39}`,
	`{"f32":3.4028235e38,"f64":1.7976931348623157e308}`,
	`{"f64":1e400}`,
	`{"f64":1e-400,"f32":1e-50}`,
	`{"f64":123456789012345678901234567890.5e-3,"pf":0.1}`,
	`{"s":null,"i":null,"ps":null,"pin":null,"raw":null,"any":null,"ints":null,"map":null,"c":null,"pupper":null,"n":null}`,
	`{"ps":"p","pi":7,"pu8":8,"pf":1.5,"pb":false,"pms":"m","ps":null}`,
	`{"pi":"x"}`,
	`{"s":1}`, `{"s":true}`, `{"s":{}}`, `{"s":[]}`, `{"b":"true"}`, `{"b":0}`, `{"i":"1"}`, `{"i":[1]}`, `{"f64":{"a":1}}`,
	`{"inner":{"x":1,"y":["a","b"]},"pin":{"x":2},"map":{"a":1,"b":2},"ints":[1,2,3],"any":{"k":[1,"2",null,true]}}`,
	`{"inner":{"x":"bad"}}`,
	`{"pin":{"y":[1]}}`,
	`{"map":{"a":"x"}}`,
	`{"ints":[1,"x",3]}`,
	`{"map":{"a":1},"map":{"b":2}}`,
	`{"inner":{"x":1},"inner":{"y":["z"]}}`,
	`{"s":"a","S":"b","PLAIN":"c","plain":"d"}`,
	`{"raw":  [1, {"a": "b"}]  ,"any":-1.5e3}`,
	`{"i":"x","c":false}`,
	`{"c":false,"i":"x"}`,
	`{"c":true,"i":"x","s":5}`,
	`{"bytes":"aGVsbG8="}`,
	`{"bytes":"!!"}`,
	`{"bytes":"!!","i":"x"}`,
	`{"i":"x","bytes":"!!"}`,
	`{"n":"12"}`, `{"n":"x"}`, `{"n":12.5e3}`, `{"n":true}`,
	`{"upper":"abc","pupper":"def"}`, `{"upper":5}`, `{"upper":"!"}`, `{"pupper":null}`,
	`{"arr":[1,2,3]}`, `{"arr":"x"}`,
	`{"e1":"x","e2":5,"q1":3,"q2":[true]}`,
	`{"e2":70000}`,
	`{"q1":"x"}`,
	`{"p1":"x"}`,
	`{"p1":"x","i":"y"}`,
	`{"i":"y","p1":"x"}`,
	`{"\u0073":"x","\u0053":"y","\u0069":2}`,
	`{"any":[1e400],"s":1}`, `{"by_id":{"1":"a","x":"b"}}`, `{"by_u8":{"255":"a","256":"b"}}`, `{"grid":[[1],[2,"x"]]}`,
	`{"deep":{"a.b":{"c":[1,"x"]},"":{"\u00e9":[true]}}}`, `{"items":[{"size":1},{"size":1.5}]}`, `{"str":"x"}`,
	`{"n":1e40}`, `{"u16":-1}`, `{"count":{"a":1,"b":"2"}}`, `{"popts":{"name":7}}`, `{"num":"1.5e3","text":"!"}`,
	`{"zz":1}`,
	`{"s":"x","ZZ":1}`,
	`{"\u00e9":1}`,
	"{\"\xff\":1}",
	`{"ms":"` + strings.Repeat("abcdefgh", 100) + `","s":"` + strings.Repeat("é\\n", 50) + `"}`,
	`{"s":"` + strings.Repeat("a", 70) + `\"` + strings.Repeat("b", 70) + `\\\"` + strings.Repeat("c", 70) + `","ms":"` +
		strings.Repeat("d", 70) + "\xff" + strings.Repeat("e", 70) + `\u00e9` + `","` + strings.Repeat("k", 70) + `":1}`,
}

// checkKeys reports whether every key of the object data is one of names,
// matched as encoding/json matches keys.
func checkKeys(t *testing.T, data []byte, names []string) bool {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s: %v", data, err)
	}
	for k := range m {
		found := false
		for _, n := range names {
			found = found || strings.EqualFold(k, n)
		}
		if !found {
			return false
		}
	}
	return true
}

// differ checks that binding data agrees with json.Unmarshal.
func differ(t *testing.T, data []byte) {
	if !json.Valid(data) {
		// Not for the binder, but it must survive it.
		var k kinds
		kb, _ := Compile(reflect.TypeFor[kinds]())
		kb.Bind(data, unsafe.Pointer(&k))
		Decode[fast](fastBinder, data)
		return
	}
	if bytes.TrimLeft(data, " \t\r\n")[0] != '{' {
		return
	}
	var got, want kinds
	errGot := kindsBinder.Bind(data, unsafe.Pointer(&got))
	errWant := json.Unmarshal(data, &want)
	compare(t, kindsBinder, data, kindsNames, errGot, errWant, got, want)

	var wantFast fast
	gotFast, errGot := Decode[fast](fastBinder, data)
	errWant = json.Unmarshal(data, &wantFast)
	compare(t, fastBinder, data, fastNames, errGot, errWant, gotFast, wantFast)
	// With what the frame decoder found out (valid UTF-8 for a text
	// frame, the longest string's end), the same result.
	var fr wire.Frame
	if wire.Decode([]byte(`{"request":{"method":"m","arguments":`+string(data)+`}}`), &fr) == nil && fr.Args != nil {
		h := Hint{UTF8: utf8.Valid(data), Str: fr.Str, StrEnd: fr.StrEnd, StrEsc: fr.StrEsc}
		gotH, errH := DecodeHint[fast](fastBinder, fr.Args, h)
		compare(t, fastBinder, data, fastNames, errH, errWant, gotH, wantFast)
	}

	var gotM, wantM mistyped
	errGot = mistypedBinder.Bind(data, unsafe.Pointer(&gotM))
	errWant = json.Unmarshal(data, &wantM)
	compare(t, mistypedBinder, data, mistypedNames, errGot, errWant, gotM, wantM)
}

func compare[T any](t *testing.T, b *Binder, data []byte, names []string, errGot, errWant error, got, want T) {
	t.Helper()
	if errGot != nil {
		if _, ok := errGot.(*Error); !ok {
			t.Fatalf("%s: error %T %v", data, errGot, errGot)
		}
	}
	known := checkKeys(t, data, names)
	if errGot != nil && strings.HasPrefix(errGot.Error(), "unexpected argument") {
		if known {
			t.Fatalf("%s: %v", data, errGot)
		}
		return
	}
	if !known {
		t.Fatalf("%s: unknown key accepted", data)
	}
	if (errGot == nil) != (errWant == nil) {
		t.Fatalf("%s:\n got error %v\nwant error %v", data, errGot, errWant)
	}
	if errWant != nil {
		if msg := wantMessage(b, data, errWant); errGot.Error() != msg {
			t.Fatalf("%s:\n got error %q\nwant error %q", data, errGot, msg)
		}
		// What the peer sent may be anything: check the rest.
		checkJSONTerms(t, withoutQuoted(errGot.Error()))
		return
	}
	g, _ := json.Marshal(got) // tells -0 from 0
	w, _ := json.Marshal(want)
	if !reflect.DeepEqual(got, want) || !bytes.Equal(g, w) {
		t.Fatalf("%s:\n got %s\nwant %s", data, g, w)
	}
}

var (
	kindsBinder    = mustCompile(reflect.TypeFor[kinds]())
	fastBinder     = mustCompile(reflect.TypeFor[fast]())
	mistypedBinder = mustCompile(reflect.TypeFor[mistyped]())
)

var mistypedNames = []string{"s", "b", "n", "i8", "u", "u16", "f32", "f", "opts", "popts", "items", "tags", "grid", "arr",
	"count", "by_id", "by_u8", "deep", "blob", "num", "text", "c", "str", "any", "e1", "e2", "p1"}

func mustCompile(t reflect.Type) *Binder {
	b, err := Compile(t)
	if err != nil {
		panic(err)
	}
	return b
}

func TestDifferential(t *testing.T) {
	if kindsBinder.fast || !fastBinder.fast {
		t.Fatal("wrong fast flags")
	}
	for _, s := range seeds {
		differ(t, []byte(s))
	}
}

func FuzzBind(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	// The arguments of every request recorded from the Python library.
	data, err := os.ReadFile("../../testdata/seed-vectors.jsonl")
	if err != nil {
		f.Fatal(err)
	}
	n := 0
	for line := range bytes.Lines(data) {
		var v struct{ Frame *string }
		if json.Unmarshal(line, &v) != nil || v.Frame == nil {
			continue
		}
		var fr struct {
			Request *struct{ Arguments json.RawMessage }
		}
		if json.Unmarshal([]byte(*v.Frame), &fr) == nil && fr.Request != nil && fr.Request.Arguments != nil {
			f.Add([]byte(fr.Request.Arguments))
			n++
		}
	}
	if n == 0 {
		f.Fatal("no request arguments in the recorded vectors")
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		differ(t, data)
	})
}

func TestKeys(t *testing.T) {
	type Base struct {
		ID   int `json:"id"`
		Note string
	}
	type args struct {
		Base
		Name string  `json:"name"`
		Opt  string  `json:"opt,omitempty"`
		Zero int     `json:"zero,omitzero"`
		Ptr  *string `json:"ptr"`
		Drop int     `json:"-"`
		//lint:ignore SA5008 the argument named "-", on purpose
		Dash   int `json:"-,"`
		Kelvin int `json:"k"`
	}
	b := mustCompile(reflect.TypeFor[args]())
	tests := []struct{ in, err string }{
		{`{"id":1,"Note":"n","name":"x","-":2,"k":3}`, ""},
		{`{"ID":1,"note":"n","NAME":"x","-":2,"K":3}`, ""},
		{"{\"id\":1,\"Note\":\"n\",\"name\":\"x\",\"-\":2,\"\u212a\":3}", ""}, // Kelvin sign folds to k
		{`{"id":1,"Note":"n","name":"x","-":2,"k":3,"Drop":1}`, `unexpected argument "Drop"`},
		{`{"id":1,"Note":"n","name":"x","-":2,"k":3,"x\u0041":1,"y":2}`, `unexpected argument "xA"`},
		{"{\"\xff\":1}", `unexpected argument "\xff"`},
		{`{"id":1,"Note":"n","-":2,"k":3}`, `missing required argument "name"`},
		{`{"Note":"n","-":2}`, `missing required arguments ["id" "name" "k"]`},
		{`{"id":"1","Note":"n","name":"x","-":2,"k":3}`, `argument "id": expected an integer, got a string`},
		{`{"id":1,"Note":"n","name":"x","-":2,"k":3.5}`, `argument "k": expected an integer, got number 3.5`},
		{`[]`, `arguments are not a JSON object`},
	}
	for _, tt := range tests {
		var a args
		err := b.Bind([]byte(tt.in), unsafe.Pointer(&a))
		if got := fmt.Sprint(err); err == nil && tt.err != "" || err != nil && got != tt.err {
			t.Errorf("%s: got %v, want %s", tt.in, err, tt.err)
		}
	}
	if err := b.Bind(nil, unsafe.Pointer(new(args))); err == nil || err.Error() != `missing required arguments ["id" "Note" "name" "-" "k"]` {
		t.Errorf("nil: %v", err)
	}
}

func TestAmbiguous(t *testing.T) {
	type A struct{ X, Y int }
	type B struct {
		X int
		Y int `json:"Y"`
	}
	type args struct {
		A
		B
	}
	b := mustCompile(reflect.TypeFor[args]())
	var got, want args
	in := []byte(`{"X":1,"Y":2}`)
	if err := b.Bind(in, unsafe.Pointer(&got)); err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(in, &want)
	if got != want || got.B.Y != 2 || got.A.X != 0 {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestMap(t *testing.T) {
	b := mustCompile(reflect.TypeFor[map[string]int]())
	var m map[string]int
	if err := b.Bind([]byte(`{"a":1,"b":2}`), unsafe.Pointer(&m)); err != nil || len(m) != 2 {
		t.Errorf("%v %v", m, err)
	}
	m = nil
	if err := b.Bind(nil, unsafe.Pointer(&m)); err != nil || m == nil {
		t.Errorf("nil args: %v %v", m, err)
	}
	if err := b.Bind([]byte(`{"a":"x"}`), unsafe.Pointer(&m)); err == nil || err.Error() != `argument "a": expected an integer, got a string` {
		t.Errorf("wrong type: %v", err)
	}
	m2, err := Decode[map[string]int](b, []byte(`{"z":26}`))
	if err != nil || m2["z"] != 26 {
		t.Errorf("Decode: %v %v", m2, err)
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[map[int]int](), reflect.TypeFor[int](), reflect.TypeFor[*struct{}]()} {
		if _, err := Compile(typ); err == nil {
			t.Errorf("%v compiled", typ)
		}
	}
}

func TestStringOption(t *testing.T) {
	type args struct {
		N int `json:"n,string"`
		S string
	}
	b := mustCompile(reflect.TypeFor[args]())
	a, err := Decode[args](b, []byte(`{"n":"12","S":"x"}`))
	if err != nil || a.N != 12 || a.S != "x" {
		t.Errorf("%+v %v", a, err)
	}
	if _, err := Decode[args](b, []byte(`{"n":"12"}`)); err == nil || err.Error() != `missing required argument "S"` {
		t.Errorf("missing: %v", err)
	}
	if _, err := Decode[args](b, []byte(`{"n":12,"S":"x"}`)); err == nil {
		t.Error("unquoted ,string accepted")
	}
}

func TestAllocs(t *testing.T) {
	type args struct {
		Text string `json:"text"`
	}
	b := mustCompile(reflect.TypeFor[args]())
	in := []byte(`{"text": "0123456789abcdef"}`)
	n := testing.AllocsPerRun(100, func() {
		a, err := Decode[args](b, in)
		if err != nil || a.Text != "0123456789abcdef" {
			t.Fatal(a, err)
		}
	})
	if n != 1 {
		t.Errorf("%v allocations, want 1", n)
	}
}

func BenchmarkBind(b *testing.B) {
	type args struct {
		Text string `json:"text"`
	}
	bd := mustCompile(reflect.TypeFor[args]())
	for _, n := range []int{16, 16 << 10} {
		in := []byte(`{"text": "` + strings.Repeat("abcdefghijklmnop", n/16) + `"}`)
		b.Run(fmt.Sprintf("text=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if _, err := Decode[args](bd, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("kinds", func(b *testing.B) {
		in := []byte(`{"s":"x","i":-12,"u64":99,"f64":1.5,"ps":"p","pb":true,"ms":"m","Plain":"\u00e9","e1":"e","ints":[1,2]}`)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Decode[kinds](kindsBinder, in); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestManyFields(t *testing.T) {
	var sfs []reflect.StructField
	for i := range 70 {
		sfs = append(sfs, reflect.StructField{Name: fmt.Sprintf("F%d", i), Type: reflect.TypeFor[int](),
			Tag: reflect.StructTag(fmt.Sprintf(`json:"f%d"`, i))})
	}
	typ := reflect.StructOf(sfs)
	b := mustCompile(typ)
	var in []string
	for i := range 70 {
		if i != 3 && i != 66 {
			in = append(in, fmt.Sprintf(`"F%d":%d`, i, i))
		}
	}
	v := reflect.New(typ)
	err := b.Bind([]byte("{"+strings.Join(in, ",")+"}"), v.UnsafePointer())
	if err == nil || err.Error() != `missing required arguments ["f3" "f66"]` {
		t.Errorf("got %v", err)
	}
	in = append(in, `"f3":3`, `"f66":66`)
	if err := b.Bind([]byte("{"+strings.Join(in, ",")+"}"), v.UnsafePointer()); err != nil {
		t.Fatal(err)
	}
	for i := range 70 {
		if got := v.Elem().Field(i).Int(); got != int64(i) {
			t.Errorf("F%d = %d", i, got)
		}
	}
}

// TestLongStrings: strings long enough for the bulk scanning of
// scanString, with escapes and non-ASCII at every offset around its switch,
// as values and as keys, and cut short (invalid JSON, which must not panic).
func TestLongStrings(t *testing.T) {
	specials := []string{"a", "é", `\"`, `\\`, `\/`, `\u00e9`, `\ud800`, `\n`, "\xff", "\u2028", `\`}
	for n := range 90 {
		for _, c := range specials {
			for _, c2 := range []string{"", `\"`, `\\`, "é", `\"\"`} {
				body := strings.Repeat("m", n) + c + strings.Repeat("x", 70) + c2 + strings.Repeat("y", 70)
				for _, data := range []string{
					`{"s":"` + body + `","ms":"x"}`,
					`{"ps":"` + body + `"}`,
					`{"` + body + `":1}`,
					`{"any":["` + body + `"],"s":"` + body + `"}`,
					`{"s":"` + body,
					`{"s":"` + body + `\`,
				} {
					differ(t, []byte(data))
				}
				if end, _ := scanString([]byte(`"`+body+`"`), 0); json.Valid([]byte(`"`+body+`"`)) && end != len(body)+2 {
					t.Fatalf("%q: end %d", body, end)
				}
			}
		}
	}
}

// goTerms are what an error for the peer must not hold: Go types, packages,
// encoding/json's wording.
var goTerms = []string{"wsrpc", "bind.", "main.", "struct", "int64", "float64", "[]", "map[",
	"int8", "int16", "int32", "uint", "float32", "uintptr", "json:", "Go ", "reflect", "unsafe", "*",
	"interface", "Unmarshal", "func", "chan", "Number", "RawMessage", "myString", "myInt", "custom", "embPtr", "EmbPtr"}

// checkJSONTerms fails t if msg, an error message for the peer, names
// anything of Go.
func checkJSONTerms(t *testing.T, msg string) {
	t.Helper()
	if term := goTermIn(msg); term != "" {
		t.Errorf("error %q names %q", msg, term)
	}
}

// withoutQuoted returns msg with every quoted string in it emptied.
func withoutQuoted(msg string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(msg, '"')
		if i < 0 {
			return b.String() + msg
		}
		b.WriteString(msg[:i])
		q, err := strconv.QuotedPrefix(msg[i:])
		if err != nil {
			return b.String() + msg[i:]
		}
		b.WriteString(`""`)
		msg = msg[i+len(q):]
	}
}

// goTermIn returns the first of goTerms in msg, or "".
func goTermIn(msg string) string {
	for _, term := range goTerms {
		if strings.Contains(msg, term) {
			return term
		}
	}
	return ""
}

type sizeOpts struct {
	Size int    `json:"size"`
	Name string `json:"name,omitempty"`
}

type stringer interface{ String() string }

// mistyped has a field of every kind the binder reports errors for.
type mistyped struct {
	S     string                          `json:"s,omitempty"`
	B     bool                            `json:"b,omitempty"`
	N     int                             `json:"n,omitempty"`
	I8    int8                            `json:"i8,omitempty"`
	U     uint                            `json:"u,omitempty"`
	U16   *uint16                         `json:"u16"`
	F32   float32                         `json:"f32,omitempty"`
	F     float64                         `json:"f,omitempty"`
	Opts  sizeOpts                        `json:"opts,omitzero"`
	POpts *sizeOpts                       `json:"popts"`
	Items []sizeOpts                      `json:"items,omitempty"`
	Tags  []string                        `json:"tags,omitempty"`
	Grid  [][]int                         `json:"grid,omitempty"`
	Arr   [2]bool                         `json:"arr,omitzero"`
	Count map[string]int                  `json:"count,omitempty"`
	ByID  map[int]string                  `json:"by_id,omitempty"`
	ByU8  map[uint8]string                `json:"by_u8,omitempty"`
	Deep  map[string]map[string][]float32 `json:"deep,omitempty"`
	Blob  []byte                          `json:"blob,omitempty"`
	Num   json.Number                     `json:"num,omitempty"`
	Text  upper                           `json:"text,omitempty"`
	C     custom                          `json:"c,omitzero"`
	Str   stringer                        `json:"str,omitempty"`
	Any   any                             `json:"any,omitempty"`
	Embedded
	*embPtr
}

// quoted has fields with the ",string" option, which encoding/json decodes.
type quoted struct {
	N int     `json:"n,string,omitempty"`
	F float32 `json:"f,string,omitempty"`
	B bool    `json:"b,string,omitempty"`
	S string  `json:"s,string,omitempty"`
}

// TestMismatchMessages: the exact message for every kind of mismatch,
// which speaks of JSON only.
func TestMismatchMessages(t *testing.T) {
	mb := mistypedBinder
	qb := mustCompile(reflect.TypeFor[quoted]())
	mapb := mustCompile(reflect.TypeFor[map[string][]int]())
	long := strings.Repeat("1", 100)
	longKey := strings.Repeat("k", 100)
	const (
		int64Range = "from -9223372036854775808 to 9223372036854775807"
		f32Range   = "from -3.4028235e+38 to 3.4028235e+38"
		f64Range   = "from -1.7976931348623157e+308 to 1.7976931348623157e+308"
	)
	tests := []struct {
		name string
		b    *Binder
		in   string
		err  string // "" for none
	}{
		{"string for number", mb, `{"s":5}`, `argument "s": expected a string, got a number`},
		{"number for string", mb, `{"n":"5"}`, `argument "n": expected an integer, got a string`},
		{"float for string", mb, `{"f":"1.5"}`, `argument "f": expected a number, got a string`},
		{"bool for string", mb, `{"b":"yes"}`, `argument "b": expected a boolean, got a string`},
		{"string for bool", mb, `{"s":false}`, `argument "s": expected a string, got a boolean`},
		{"number for bool", mb, `{"b":1}`, `argument "b": expected a boolean, got a number`},
		{"array for object", mb, `{"opts":[1]}`, `argument "opts": expected an object, got an array`},
		{"object for array", mb, `{"items":{"a":1}}`, `argument "items": expected an array, got an object`},
		{"object for number", mb, `{"n":{}}`, `argument "n": expected an integer, got an object`},
		{"array for string", mb, `{"s":[]}`, `argument "s": expected a string, got an array`},
		{"nested field", mb, `{"opts":{"size":"big"}}`, `argument "opts.size": expected an integer, got a string`},
		{"nested field by pointer", mb, `{"popts":{"name":7}}`, `argument "popts.name": expected a string, got a number`},
		{"slice element", mb, `{"tags":["a",2]}`, `argument "tags[1]": expected a string, got a number`},
		{"field of slice element", mb, `{"items":[{"size":1},{"size":true}]}`, `argument "items[1].size": expected an integer, got a boolean`},
		{"nested slice element", mb, `{"grid":[[1],[2, "x"]]}`, `argument "grid[1][1]": expected an integer, got a string`},
		{"array element", mb, `{"arr":[true,1]}`, `argument "arr[1]": expected a boolean, got a number`},
		{"map value", mb, `{"count":{"a":1,"b":"2"}}`, `argument "count.b": expected an integer, got a string`},
		{"map value under odd keys", mb, `{"deep":{"a.b":{"c":[1,"x"]}}}`, `argument "deep[\"a.b\"].c[1]": expected a number, got a string`},
		{"long map key", mb, `{"count":{"` + longKey + `":true}}`, `argument "count.` + longKey[:61] + `...": expected an integer, got a boolean`},
		{"map key", mb, `{"by_id":{"1":"a","x":"b"}}`, `argument "by_id": expected each key to be an integer, got key "x"`},
		{"map key overflow", mb, `{"by_u8":{"300":"a"}}`, `argument "by_u8": expected each key to be an integer from 0 to 255, got key "300"`},
		{"integer overflow", mb, `{"n":1e40}`, `argument "n": expected an integer ` + int64Range + `, got number 1e40`},
		{"int8 overflow", mb, `{"i8":128}`, `argument "i8": expected an integer from -128 to 127, got number 128`},
		{"int8 underflow", mb, `{"i8":-129}`, `argument "i8": expected an integer from -128 to 127, got number -129`},
		{"nested overflow", mb, `{"opts":{"size":99999999999999999999}}`, `argument "opts.size": expected an integer ` + int64Range + `, got number 99999999999999999999`},
		{"long number", mb, `{"n":` + long + `}`, `argument "n": expected an integer ` + int64Range + `, got number ` + long[:29] + `...`},
		{"fraction", mb, `{"n":2.5}`, `argument "n": expected an integer, got number 2.5`},
		{"whole with exponent", mb, `{"n":1e2}`, `argument "n": expected an integer without a fraction or exponent, got number 1e2`},
		{"whole with fraction", mb, `{"i8":-1.000}`, `argument "i8": expected an integer without a fraction or exponent, got number -1.000`},
		{"unsigned negative", mb, `{"u":-1}`, `argument "u": expected a non-negative integer, got number -1`},
		{"unsigned negative zero", mb, `{"u":-0}`, `argument "u": expected a non-negative integer, got number -0`},
		{"unsigned negative fraction", mb, `{"u16":-1.5}`, `argument "u16": expected a non-negative integer, got number -1.5`},
		{"unsigned overflow", mb, `{"u16":65536}`, `argument "u16": expected an integer from 0 to 65535, got number 65536`},
		{"unsigned string", mb, `{"u":"1"}`, `argument "u": expected a non-negative integer, got a string`},
		{"float32 overflow", mb, `{"f32":-1e39}`, `argument "f32": expected a number ` + f32Range + `, got number -1e39`},
		{"float64 overflow", mb, `{"f":1e309}`, `argument "f": expected a number ` + f64Range + `, got number 1e309`},
		{"overflow in any", mb, `{"any":{"x":[0, 1e400]}}`, `argument "any.x[1]": expected a number ` + f64Range + `, got number 1e400`},
		{"null into non-pointers", mb, `{"s":null,"n":null,"b":null,"opts":null,"tags":null,"u16":null,"text":null,"num":null}`, ""},
		{"null elements", mb, `{"tags":["a",null],"items":[null]}`, ""},
		{"base64", mb, `{"blob":"!!"}`, `argument "blob": invalid base64 data at byte 0`},
		{"number for bytes", mb, `{"blob":5}`, `argument "blob": expected a base64 string, got a number`},
		{"byte overflow", mb, `{"blob":[1,300]}`, `argument "blob[1]": expected an integer from 0 to 255, got number 300`},
		{"bad number string", mb, `{"num":"x"}`, `argument "num": expected a number or a string holding a number, got "x"`},
		{"long number string", mb, `{"num":"` + strings.Repeat("x", 40) + `"}`, `argument "num": expected a number or a string holding a number, got "` + strings.Repeat("x", 29) + `"...`},
		{"array for number", mb, `{"num":[]}`, `argument "num": expected a number or a string holding a number, got an array`},
		{"text unmarshaler", mb, `{"text":1}`, `argument "text": expected a string, got a number`},
		{"text unmarshaler fails", mb, `{"text":"!"}`, `argument "text": invalid value`},
		{"json unmarshaler fails", mb, `{"c":false}`, `argument "c": invalid value`},
		{"interface", mb, `{"str":"x"}`, `argument "str": cannot be a string`},
		{"embedded field", mb, `{"e2":"x"}`, `argument "e2": expected an integer, got a string`},
		{"embedded overflow", mb, `{"e2":40000}`, `argument "e2": expected an integer from -32768 to 32767, got number 40000`},
		{"unexported embedded pointer", mb, `{"p1":"x"}`, `argument "p1": cannot be set`},
		{"key as sent", mb, `{"N":"x"}`, `argument "N": expected an integer, got a string`},
		{"escaped key", mb, `{"\u006e":"x"}`, `argument "n": expected an integer, got a string`},
		{"first error counts", mb, `{"s":"ok","tags":[1],"n":"x"}`, `argument "tags[0]": expected a string, got a number`},
		{"fast binder", fastBinder, `{"s":"x","i8":300}`, `argument "i8": expected an integer from -128 to 127, got number 300`},
		{"fast binder pointer", fastBinder, `{"pf":"1"}`, `argument "pf": expected a number, got a string`},
		{"quoted unquoted", qb, `{"n":12}`, `argument "n": expected a string holding an integer, got a number`},
		{"quoted not a number", qb, `{"n":"x"}`, `argument "n": expected a string holding an integer, got "x"`},
		{"quoted empty", qb, `{"n":""}`, `argument "n": expected a string holding an integer, got ""`},
		{"quoted fraction", qb, `{"n":"1.5"}`, `argument "n": expected a string holding an integer, got "1.5"`},
		{"quoted overflow", qb, `{"n":"1e40"}`, `argument "n": expected a string holding an integer ` + int64Range + `, got "1e40"`},
		{"quoted float overflow", qb, `{"f":"1e39"}`, `argument "f": expected a string holding a number ` + f32Range + `, got "1e39"`},
		{"quoted bool", qb, `{"b":"yes"}`, `argument "b": expected a string holding a boolean, got "yes"`},
		{"quoted string", qb, `{"s":"x"}`, `argument "s": expected a string holding a JSON string, got "x"`},
		{"quoted string unquoted", qb, `{"s":1}`, `argument "s": expected a string holding a JSON string, got a number`},
		{"quoted fine", qb, `{"n":"12","f":"1.5","b":"true","s":"\"x\""}`, ""},
		{"map of arrays", mapb, `{"a":[1],"b":[1,"x"]}`, `argument "b[1]": expected an integer, got a string`},
		{"map empty key", mapb, `{"":{}}`, `argument "[\"\"]": expected an array, got an object`},
		{"map value overflow", mapb, `{"a":[1e19]}`, `argument "a[0]": expected an integer ` + int64Range + `, got number 1e19`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := reflect.New(tt.b.Type())
			err := tt.b.Bind([]byte(tt.in), v.UnsafePointer())
			if tt.err == "" {
				if err != nil {
					t.Fatalf("%s: %v", tt.in, err)
				}
				return
			}
			if err == nil || err.Error() != tt.err {
				t.Fatalf("%s:\n got %v\nwant %s", tt.in, err, tt.err)
			}
			if _, ok := err.(*Error); !ok {
				t.Errorf("error %T", err)
			}
			checkJSONTerms(t, err.Error())
			// encoding/json fails on the same member, for the same reason.
			jerr := json.Unmarshal([]byte(tt.in), reflect.New(tt.b.Type()).Interface())
			if jerr == nil {
				t.Fatalf("json.Unmarshal accepts %s", tt.in)
			}
			if msg := wantMessage(tt.b, []byte(tt.in), jerr); msg != tt.err {
				t.Errorf("from json.Unmarshal's error %v:\n got %s\nwant %s", jerr, msg, tt.err)
			}
		})
	}
	// The cause of "invalid value" stays for the server.
	var m mistyped
	err := mb.Bind([]byte(`{"text":"!"}`), unsafe.Pointer(&m))
	if e, ok := err.(*Error); !ok || e.Err == nil || e.Err.Error() != "upper: no !" {
		t.Errorf("cause of %v: %v", err, errors.Unwrap(err))
	}
}

func TestCheckJSONTerms(t *testing.T) {
	for _, msg := range []string{
		`argument "n": cannot use JSON number as main.T`,
		`argument "Opts.size": cannot unmarshal string into Go struct field`,
		`argument "x": cannot use JSON string as int64`,
		`argument "x": cannot use JSON array as map[string]float64`,
		`argument "x": cannot use JSON object as []github.com/wsrpc/wsrpc/internal/bind.T`,
	} {
		if goTermIn(msg) == "" {
			t.Errorf("%q passed", msg)
		}
	}
}
