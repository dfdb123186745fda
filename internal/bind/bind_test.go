package bind

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
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

// oldMessage is the message the root package made of a json.Unmarshal
// error before the binder.
func oldMessage(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Sprintf("argument %q: cannot use JSON %s as %v", te.Field, te.Value, te.Type)
		}
		return fmt.Sprintf("arguments: cannot use JSON %s as %v", te.Value, te.Type)
	}
	return "arguments: " + err.Error()
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
	compare(t, data, kindsNames, errGot, errWant, got, want)

	var wantFast fast
	gotFast, errGot := Decode[fast](fastBinder, data)
	errWant = json.Unmarshal(data, &wantFast)
	compare(t, data, fastNames, errGot, errWant, gotFast, wantFast)
}

func compare[T any](t *testing.T, data []byte, names []string, errGot, errWant error, got, want T) {
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
		if errGot.Error() != oldMessage(errWant) {
			t.Fatalf("%s:\n got error %q\nwant error %q", data, errGot, oldMessage(errWant))
		}
		return
	}
	g, _ := json.Marshal(got) // tells -0 from 0
	w, _ := json.Marshal(want)
	if !reflect.DeepEqual(got, want) || !bytes.Equal(g, w) {
		t.Fatalf("%s:\n got %s\nwant %s", data, g, w)
	}
}

var (
	kindsBinder = mustCompile(reflect.TypeFor[kinds]())
	fastBinder  = mustCompile(reflect.TypeFor[fast]())
)

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
		{`{"id":"1","Note":"n","name":"x","-":2,"k":3}`, `argument "Base.id": cannot use JSON string as int`},
		{`{"id":1,"Note":"n","name":"x","-":2,"k":3.5}`, `argument "k": cannot use JSON number 3.5 as int`},
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
	if err := b.Bind([]byte(`{"a":"x"}`), unsafe.Pointer(&m)); err == nil || !strings.Contains(err.Error(), "cannot use JSON string as int") {
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
