// Package bind decodes the keyword arguments of a call, a JSON object, into
// a Go struct, as encoding/json would, but checking the keys against the
// struct's fields and without reflection on the hot path.
//
// A [Binder] is compiled once per argument type. Fields of kind string,
// bool, int*, uint*, float* (and pointers to them) are decoded directly;
// every other field falls back to encoding/json for its own value.
//
// Its errors go to the peer that made the call, so they speak of JSON only
// (see errors.go): the argument's path as sent ("opts.size", "items[3]"),
// the JSON it takes and the JSON it got, never a Go type or package.
package bind

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"unicode/utf8"
	"unsafe"
)

// Error is an argument error: the arguments do not fit the type. Msg is
// meant for the peer: it speaks of JSON only, never of Go types.
type Error struct {
	Msg string
	// Err is what a json.Unmarshaler or encoding.TextUnmarshaler of the
	// argument's type returned, if that is the cause. It may name Go
	// types: it is for the server's eyes, not the peer's.
	Err error
}

func (e *Error) Error() string { return e.Msg }

func (e *Error) Unwrap() error { return e.Err }

// Binder decodes arguments into one Go type. It is safe for concurrent use.
type Binder struct {
	typ     reflect.Type
	whole   bool           // decode with json.Unmarshal after checking the keys
	anyKey  bool           // a map: every key is welcome, none required
	fast    bool           // no field needs encoding/json
	fields  []field        // in field order
	byName  map[string]int // exact names, for types with many fields
	ignored [][]byte       // names encoding/json drops as ambiguous: accepted, not decoded
}

type kind uint8

const (
	kindJSON kind = iota // json.Unmarshal
	kindString
	kindBool
	kindInt
	kindUint
	kindFloat
	kindBorrowed // Borrowed: the string's bytes, not copied
)

// Borrowed is the []byte type (wsrpc.RawText) whose fields are bound to a
// string argument's bytes in the input, without a copy, when it has no
// escapes. Package wsrpc sets it once, at init.
var Borrowed reflect.Type

// field is one keyword argument.
type field struct {
	name     []byte
	kind     kind
	ptr      bool         // a pointer to kind, allocated as needed
	bits     int          // size of an int, uint or float
	typ      reflect.Type // the field's type, or the pointed-to type if ptr
	want     string       // what the field takes, for errors (see target)
	required bool
	quoted   bool    // the ",string" option applies
	hops     []hop   // embedded struct pointers on the way to the field
	offset   uintptr // from the last hop's struct (or the root)
}

// hop is an embedded pointer to a struct holding a field.
type hop struct {
	offset   uintptr // of the pointer, from the previous hop's struct
	elem     reflect.Type
	settable bool // exported, so that encoding/json would allocate it
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	numberType      = reflect.TypeFor[json.Number]()
)

// Compile returns the binder for t, a struct whose fields are the keyword
// arguments, or a map with string keys, which takes any keywords.
func Compile(t reflect.Type) (*Binder, error) {
	switch t.Kind() {
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return nil, fmt.Errorf("argument type %v: map keys must be strings", t)
		}
		return &Binder{typ: t, whole: true, anyKey: true}, nil
	case reflect.Struct:
	default:
		return nil, fmt.Errorf("argument type %v: must be a struct (keyword arguments by field) or a map", t)
	}
	b := &Binder{typ: t, fast: true}
	fields, ignored := structFields(t)
	for _, sf := range fields {
		f := field{name: []byte(sf.name), required: sf.required, quoted: sf.quoted}
		f.hops, f.offset = locate(t, sf.index)
		ft := sf.typ
		if ft.Kind() == reflect.Pointer {
			f.ptr, ft = true, ft.Elem()
		}
		f.typ = ft
		if Borrowed != nil && ft == Borrowed {
			f.kind = kindBorrowed
		} else if !reflect.PointerTo(ft).Implements(jsonUnmarshaler) && !reflect.PointerTo(ft).Implements(textUnmarshaler) && ft != numberType {
			switch ft.Kind() {
			case reflect.String:
				f.kind = kindString
			case reflect.Bool:
				f.kind = kindBool
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
				f.kind, f.bits = kindInt, ft.Bits()
			case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
				f.kind, f.bits = kindUint, ft.Bits()
			case reflect.Float32, reflect.Float64:
				f.kind, f.bits = kindFloat, ft.Bits()
			}
		}
		if f.kind == kindJSON {
			f.ptr, f.typ = false, sf.typ
			b.fast = false
		}
		_, _, f.want = target(f.typ)
		if f.kind == kindBorrowed {
			f.want = "a string"
		}
		b.whole = b.whole || sf.quoted
		b.fields = append(b.fields, f)
	}
	if b.whole {
		b.fast = false
	}
	for _, name := range ignored {
		b.ignored = append(b.ignored, []byte(name))
	}
	if len(b.fields) > 8 {
		b.byName = make(map[string]int, len(b.fields))
		for i, f := range b.fields {
			b.byName[string(f.name)] = i
		}
	}
	return b, nil
}

// locate follows an encoding/json field index from t to the field.
func locate(t reflect.Type, index []int) (hops []hop, offset uintptr) {
	for n, i := range index {
		sf := t.Field(i)
		offset += sf.Offset
		if n == len(index)-1 {
			break
		}
		t = sf.Type
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
			hops = append(hops, hop{offset: offset, elem: t, settable: sf.IsExported()})
			offset = 0
		}
	}
	return hops, offset
}

// Type returns the type b decodes into.
func (b *Binder) Type() reflect.Type { return b.typ }

// Decode binds args (a JSON object; nil means {}) into a new T, which must
// be the type b was compiled for. Unlike [Binder.Bind], it keeps the value
// off the heap when b needs no encoding/json.
func Decode[T any](b *Binder, args []byte) (T, error) { return decode[T](b, args, Hint{}) }

// Hint is what the frame decoder already found out about args, so that
// the binder need not do it again.
type Hint struct {
	UTF8 bool // args is valid UTF-8 (a checked text frame)
	// args[Str:StrEnd] is a string token, quotes included, with escapes
	// if StrEsc; StrEnd is 0 if none is known.
	Str, StrEnd int
	StrEsc      bool
}

// DecodeHint is [Decode] with what h says of args taken as true.
func DecodeHint[T any](b *Binder, args []byte, h Hint) (T, error) { return decode[T](b, args, h) }

func decode[T any](b *Binder, args []byte, h Hint) (T, error) {
	if reflect.TypeFor[T]() != b.typ {
		panic("bind: Decode into " + reflect.TypeFor[T]().String() + " with a binder for " + b.typ.String())
	}
	if b.fast {
		var v T
		_, soft, err := b.scan(args, unsafe.Pointer(&v), nil, &h)
		if err == nil && soft != nil {
			err = &Error{Msg: soft.msg}
		}
		return v, err
	}
	v := new(T)
	err := b.bind(args, unsafe.Pointer(v), &h)
	return *v, err
}

// Bind decodes args, a JSON object (nil means {}), into the value of b's
// type that dst points to. args must be valid JSON (as checked by
// wire.Decode); Bind never fails on valid JSON other than with an *Error.
// dst escapes to the heap; see [Decode].
func (b *Binder) Bind(args []byte, dst unsafe.Pointer) error { return b.bind(args, dst, &Hint{}) }

func (b *Binder) bind(args []byte, dst unsafe.Pointer, h *Hint) error {
	if b.anyKey {
		return b.unmarshalAll(args, dst)
	}
	var buf [4]pending
	pend, soft, err := b.scan(args, dst, buf[:0], h)
	if err != nil {
		return err
	}
	if b.whole {
		return b.unmarshalAll(args, dst)
	}
	for _, p := range pend {
		f := &b.fields[p.field]
		var e error
		if fp, ok := f.locate(dst); !ok {
			e = &savedError{msg: argMessage(p.path(), "cannot be set")}
		} else if err := unmarshalAt(p.raw, f.typ, fp); err != nil {
			e = convert(err, p.raw, p.path(), f)
		}
		switch e := e.(type) {
		case nil:
		case *savedError: // saved; the first one in the object counts
			if soft == nil || soft.seq > p.seq {
				e.seq, soft = p.seq, e
			}
		default: // encoding/json would stop here
			return e
		}
	}
	if soft != nil {
		return &Error{Msg: soft.msg}
	}
	return nil
}

// pending is a value for a field that needs encoding/json.
type pending struct {
	field int
	seq   int    // the member's position in the object
	key   []byte // as in the object, escapes and all
	raw   []byte
}

// path is the path of p's argument in errors: its key, unescaped.
func (p *pending) path() []byte {
	return appendKey(nil, appendUnquoted(nil, p.key))
}

// savedError is an error that encoding/json saves while it carries on
// decoding (a type error), with the position of the member it is about.
type savedError struct {
	msg string
	seq int
}

func (e *savedError) Error() string { return e.msg }

// scan checks the keys of args against b's fields and, unless b.whole,
// decodes the values of fast fields into dst; values for other fields go to
// pend, which it returns. It returns the error to report now (unknown,
// missing, malformed), and else the first saved type error, if any. scan
// never leaks dst.
func (b *Binder) scan(args []byte, dst unsafe.Pointer, pend []pending, h *Hint) (_ []pending, soft *savedError, err error) {
	if args == nil {
		args = emptyObject
	}
	var seen uint64 // fields seen, if there are at most 64
	var seenMany []bool
	if len(b.fields) > 64 {
		seenMany = make([]bool, len(b.fields))
	}
	i := skipSpace(args, 0)
	if i >= len(args) || args[i] != '{' {
		return nil, nil, &Error{Msg: "arguments are not a JSON object"}
	}
	i = skipSpace(args, i+1)
	for seq := 0; i < len(args) && args[i] != '}'; seq++ {
		if args[i] != '"' {
			return nil, nil, errMalformed
		}
		end, flags := scanString(args, i)
		if end < 0 {
			return nil, nil, errMalformed
		}
		rawKey, key := args[i+1:end-1], args[i+1:end-1]
		if flags != 0 {
			var kb [64]byte
			key = appendUnquoted(kb[:0], key)
		}
		i = skipSpace(args, end)
		if i >= len(args) || args[i] != ':' {
			return nil, nil, errMalformed
		}
		i = skipSpace(args, i+1)
		n, ok := b.find(key)
		if !ok {
			if flags&hasEscape == 0 {
				key = rawKey // as the key was reported before the binder
			}
			return nil, nil, &Error{Msg: fmt.Sprintf("unexpected argument %q", string(key))}
		}
		switch {
		case n < 0 || b.whole: // ignored, or decoded later as a whole
			end = skipValue(args, i)
		case b.fields[n].kind == kindJSON:
			end = skipValue(args, i)
			if end >= 0 {
				pend = append(pend, pending{field: n, seq: seq, key: rawKey, raw: args[i:end]})
			}
		default:
			var fail failure
			end, fail = b.fields[n].decode(args, i, dst, h)
			if fail != 0 && soft == nil {
				soft = b.fields[n].failed(fail, key, args[i:end])
				soft.seq = seq
			}
		}
		switch {
		case n < 0:
		case seenMany != nil:
			seenMany[n] = true
		default:
			seen |= 1 << n
		}
		if end < 0 {
			return nil, nil, errMalformed
		}
		i = skipSpace(args, end)
		if i < len(args) && args[i] == ',' {
			i = skipSpace(args, i+1)
		}
	}
	if i >= len(args) {
		return nil, nil, errMalformed
	}
	var missing []string
	for n := range b.fields {
		ok := seen&(1<<n) != 0
		if seenMany != nil {
			ok = seenMany[n]
		}
		if !ok && b.fields[n].required {
			missing = append(missing, string(b.fields[n].name))
		}
	}
	switch {
	case len(missing) == 1:
		return nil, nil, &Error{Msg: fmt.Sprintf("missing required argument %q", missing[0])}
	case len(missing) > 1:
		return nil, nil, &Error{Msg: fmt.Sprintf("missing required arguments %q", missing)}
	}
	return pend, soft, nil
}

var (
	errMalformed = &Error{Msg: "arguments: malformed JSON"}
	emptyObject  = []byte("{}")
)

// find returns the field for key: matched exactly, else without regard to
// case, as encoding/json does; -1 for an ignored name.
func (b *Binder) find(key []byte) (int, bool) {
	if b.byName != nil {
		if n, ok := b.byName[string(key)]; ok {
			return n, true
		}
	} else {
		for n := range b.fields {
			if string(b.fields[n].name) == string(key) {
				return n, true
			}
		}
	}
	for n := range b.fields {
		if bytes.EqualFold(b.fields[n].name, key) {
			return n, true
		}
	}
	for _, name := range b.ignored {
		if bytes.EqualFold(name, key) {
			return -1, true
		}
	}
	return 0, false
}

// locate returns a pointer to f in the struct at dst, allocating embedded
// struct pointers on the way as encoding/json does; false if it cannot,
// as f lies behind a nil embedded pointer to an unexported struct.
func (f *field) locate(dst unsafe.Pointer) (unsafe.Pointer, bool) {
	for _, h := range f.hops {
		// The pointer field lies h.offset bytes into the struct at dst.
		pp := (*unsafe.Pointer)(unsafe.Add(dst, h.offset))
		if *pp == nil {
			if !h.settable {
				return nil, false
			}
			*pp = reflect.New(h.elem).UnsafePointer()
		}
		dst = *pp
	}
	return unsafe.Add(dst, f.offset), true
}

// failure is why a value did not go into a field (and encoding/json saved
// an error for it).
type failure uint8

const (
	failType failure = 1 + iota // the value does not fit the field's type
	failSet                     // the field cannot be set (see locate)
)

// failed returns the error for a failure to decode v into f, given under
// key (unescaped).
func (f *field) failed(fail failure, key, v []byte) *savedError {
	path := appendKey(nil, key)
	if fail == failSet {
		return &savedError{msg: argMessage(path, "cannot be set")}
	}
	return &savedError{msg: argMessage(path, mismatch(f.kind, f.bits, f.want, v))}
}

// decode decodes the value at args[i] into f of the struct at dst, and
// returns the value's end (-1 if malformed), with the failure for which
// encoding/json would save an error, if any.
func (f *field) decode(args []byte, i int, dst unsafe.Pointer, h *Hint) (int, failure) {
	end, flags := -1, 0
	switch {
	case i >= len(args):
	case args[i] == '"':
		if i == h.Str && h.StrEnd > 0 {
			end, flags = h.StrEnd, hasNonASCII // as scanLong, without looking
			if h.StrEsc {
				flags |= hasEscape
			}
		} else {
			end, flags = scanString(args, i)
		}
		if h.UTF8 {
			flags &^= hasNonASCII
		}
	default:
		end = skipValue(args, i)
	}
	if end <= i {
		return -1, 0 // malformed
	}
	p, ok := f.locate(dst)
	if !ok {
		return end, failSet
	}
	v := args[i:end]
	if v[0] == 'n' { // null: a pointer becomes nil, anything else stays
		if f.ptr {
			*(*unsafe.Pointer)(p) = nil
		}
		return end, 0
	}
	if f.ptr {
		// p points to a pointer field: allocate its target if need be.
		pp := (*unsafe.Pointer)(p)
		if *pp == nil {
			*pp = reflect.New(f.typ).UnsafePointer()
		}
		p = *pp
	}
	// Below, p points to a value of f.typ, whose kind f.kind and f.bits
	// describe, so each store has the right size and type.
	ok = false
	switch f.kind {
	case kindString:
		if v[0] == '"' {
			*(*string)(p), ok = stringOf(v[1:len(v)-1], flags), true
		}
	case kindBorrowed:
		if v[0] == '"' {
			s := v[1 : len(v)-1]
			if flags&hasEscape == 0 && (flags&hasNonASCII == 0 || utf8.Valid(s)) {
				*(*[]byte)(p) = s[:len(s):len(s)] // no room to append over the input
			} else {
				*(*[]byte)(p) = appendUnquoted(make([]byte, 0, len(s)), s)
			}
			ok = true
		}
	case kindBool:
		if v[0] == 't' || v[0] == 'f' {
			*(*bool)(p), ok = v[0] == 't', true
		}
	case kindInt, kindUint, kindFloat:
		if v[0] != '-' && (v[0] < '0' || v[0] > '9') {
			break
		}
		ok = storeNumber(p, f.kind, f.bits, v)
	}
	if !ok {
		return end, failType
	}
	return end, 0
}

// unmarshalAll decodes args into dst with encoding/json.
func (b *Binder) unmarshalAll(args []byte, dst unsafe.Pointer) error {
	if args == nil {
		args = emptyObject
	}
	if err := unmarshalAt(args, b.typ, dst); err != nil {
		return b.wholeError(err, args)
	}
	return nil
}

// wholeError turns an error of json.Unmarshal of args into a value of b's
// type into an *Error.
func (b *Binder) wholeError(err error, args []byte) *Error {
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		return &Error{Msg: typeMessage(te, args, nil)}
	}
	if errors.As(err, new(*json.SyntaxError)) {
		return errMalformed
	}
	// The error does not say where it is: find the first member that makes
	// it alone.
	i := skipSpace(args, 0)
	if i < len(args) && args[i] == '{' {
		i = skipSpace(args, i+1)
	}
	for i < len(args) && args[i] == '"' {
		ke, _ := scanString(args, i)
		if ke < 0 {
			break
		}
		j := skipSpace(args, ke)
		if j >= len(args) || args[j] != ':' {
			break
		}
		j = skipSpace(args, j+1)
		ve := skipValue(args, j)
		if ve < 0 {
			break
		}
		one := make([]byte, 0, ke-i+ve-j+3)
		one = append(append(append(append(append(one, '{'), args[i:ke]...), ':'), args[j:ve]...), '}')
		if e := json.Unmarshal(one, reflect.New(b.typ).Interface()); e != nil && e.Error() == err.Error() {
			key := appendUnquoted(nil, args[i+1:ke-1])
			var f *field
			if n, ok := b.find(key); ok && n >= 0 && !b.anyKey {
				f = &b.fields[n]
			}
			msg, _, cause := otherMessage(err, args[j:ve], appendKey(nil, key), f)
			return &Error{Msg: msg, Err: cause}
		}
		if i = skipSpace(args, ve); i < len(args) && args[i] == ',' {
			i = skipSpace(args, i+1)
		}
	}
	return &Error{Msg: "arguments: invalid value", Err: err}
}

// unmarshalAt decodes raw with encoding/json into the value of type t at p,
// on top of what is there, as encoding/json decodes a struct field.
func unmarshalAt(raw []byte, t reflect.Type, p unsafe.Pointer) error {
	v := reflect.NewAt(t, p)
	return json.Unmarshal(raw, v.Interface())
}

// convert turns an error of json.Unmarshal of raw, the value of field f at
// path, into an *Error, or a *savedError for the errors encoding/json saves
// and carries on after.
func convert(err error, raw, path []byte, f *field) error {
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		return &savedError{msg: typeMessage(te, raw, path)}
	}
	if errors.As(err, new(*json.SyntaxError)) {
		return errMalformed
	}
	msg, saved, cause := otherMessage(err, raw, path, f)
	if saved {
		return &savedError{msg: msg}
	}
	return &Error{Msg: msg, Err: cause}
}
