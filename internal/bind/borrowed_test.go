package bind

import (
	"reflect"
	"testing"
	"unsafe"
)

// rawText stands for wsrpc.RawText, which sets Borrowed the same way.
type rawText []byte

func init() { Borrowed = reflect.TypeFor[rawText]() }

type borrowedArgs struct {
	T rawText  `json:"t"`
	P *rawText `json:"p,omitempty"`
	S string   `json:"s,omitempty"`
}

// TestBorrowed: a Borrowed field refers to the input's bytes when the
// string has no escapes (and is valid UTF-8), and holds its own unescaped
// copy otherwise; other kinds are refused as for a string.
func TestBorrowed(t *testing.T) {
	b := mustCompile(reflect.TypeFor[borrowedArgs]())
	if !b.fast {
		t.Fatal("a binder with a Borrowed field should not need encoding/json")
	}
	within := func(p, in []byte) bool {
		if len(p) == 0 {
			return false
		}
		s, e := uintptr(unsafe.Pointer(&in[0])), uintptr(unsafe.Pointer(&in[len(in)-1]))
		q := uintptr(unsafe.Pointer(&p[0]))
		return q >= s && q <= e
	}
	long := "abcdefghijklmnopqrstuvwxyz0123456789"
	for len(long) < 5000 {
		long += long
	}
	for _, tt := range []struct {
		name, in, want string
		aliased        bool
	}{
		{"plain", `{"t":"hello"}`, "hello", true},
		{"long plain", `{"t":"` + long + `"}`, long, true},
		{"non-ASCII", `{"t":"héllo ✓"}`, "héllo ✓", true},
		{"escapes", `{"t":"a\nb\u00e9\"c"}`, "a\nb\u00e9\"c", false},
		{"long with an escape", `{"t":"` + long + `\t"}`, long + "\t", false},
		{"invalid UTF-8", "{\"t\":\"a\xffb\"}", "a\ufffdb", false},
		{"empty", `{"t":""}`, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.in)
			for _, utf8ok := range []bool{false, true} {
				if utf8ok && tt.name == "invalid UTF-8" {
					continue // the caller would have refused the frame
				}
				got, err := decode[borrowedArgs](b, in, Hint{UTF8: utf8ok})
				if err != nil {
					t.Fatalf("utf8ok=%v: %v", utf8ok, err)
				}
				if string(got.T) != tt.want {
					t.Errorf("utf8ok=%v: T = %q, want %q", utf8ok, got.T, tt.want)
				}
				if a := within(got.T, in); a != tt.aliased {
					t.Errorf("utf8ok=%v: T refers to the input: %v, want %v", utf8ok, a, tt.aliased)
				}
				if cap(got.T) != len(got.T) && tt.aliased {
					t.Errorf("utf8ok=%v: cap %d > len %d: an append would write over the input", utf8ok, cap(got.T), len(got.T))
				}
			}
		})
	}
	got, err := Decode[borrowedArgs](b, []byte(`{"t":"x","p":"y","s":"z"}`))
	if err != nil || string(got.T) != "x" || got.P == nil || string(*got.P) != "y" || got.S != "z" {
		t.Errorf("pointer and string beside it: %+v, %v", got, err)
	}
	got, err = Decode[borrowedArgs](b, []byte(`{"t":null}`))
	if err != nil || got.T != nil {
		t.Errorf("null: %+v, %v", got, err)
	}
	for in, want := range map[string]string{
		`{"t":5}`:     `argument "t": expected a string, got a number`,
		`{"t":["a"]}`: `argument "t": expected a string, got an array`,
		`{"p":true}`:  `missing required argument "t"`,
	} {
		if _, err := Decode[borrowedArgs](b, []byte(in)); err == nil || err.Error() != want {
			t.Errorf("%s: err = %v, want %q", in, err, want)
		}
	}
}
