// Package bind decodes the keyword arguments of a call, a JSON object, into
// a Go struct, as encoding/json would, but checking the keys against the
// struct's fields and without reflection on the hot path.
//
// A [Binder] is compiled once per argument type. Fields of kind string,
// bool, int*, uint*, float* (and pointers to them) are decoded directly;
// every other field falls back to encoding/json for its own value.
package bind

import (
	"bytes"
	"encoding"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"unsafe"
)

// Error is an argument error: the arguments do not fit the type.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

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
)

// field is one keyword argument.
type field struct {
	name     []byte
	path     string // the name in errors, as encoding/json: embedded Go field names, dotted, then name
	kind     kind
	ptr      bool         // a pointer to kind, allocated as needed
	bits     int          // size of an int, uint or float
	typ      reflect.Type // the field's type, or the pointed-to type if ptr
	required bool
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
		f := field{name: []byte(sf.name), required: sf.required}
		f.path, f.hops, f.offset = locate(t, sf.index)
		ft := sf.typ
		if ft.Kind() == reflect.Pointer {
			f.ptr, ft = true, ft.Elem()
		}
		f.typ = ft
		if !reflect.PointerTo(ft).Implements(jsonUnmarshaler) && !reflect.PointerTo(ft).Implements(textUnmarshaler) && ft != numberType {
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
func locate(t reflect.Type, index []int) (path string, hops []hop, offset uintptr) {
	for n, i := range index {
		sf := t.Field(i)
		offset += sf.Offset
		if n == len(index)-1 {
			break
		}
		path += sf.Name + "."
		t = sf.Type
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
			hops = append(hops, hop{offset: offset, elem: t, settable: sf.IsExported()})
			offset = 0
		}
	}
	return path, hops, offset
}

// Type returns the type b decodes into.
func (b *Binder) Type() reflect.Type { return b.typ }

// Decode binds args (a JSON object; nil means {}) into a new T, which must
// be the type b was compiled for. Unlike [Binder.Bind], it keeps the value
// off the heap when b needs no encoding/json.
func Decode[T any](b *Binder, args []byte) (T, error) {
	if reflect.TypeFor[T]() != b.typ {
		panic("bind: Decode into " + reflect.TypeFor[T]().String() + " with a binder for " + b.typ.String())
	}
	if b.fast {
		var v T
		_, soft, err := b.scan(args, unsafe.Pointer(&v), nil)
		if err == nil && soft != nil {
			err = &Error{soft.msg}
		}
		return v, err
	}
	v := new(T)
	err := b.Bind(args, unsafe.Pointer(v))
	return *v, err
}

// Bind decodes args, a JSON object (nil means {}), into the value of b's
// type that dst points to. args must be valid JSON (as checked by
// wire.Decode); Bind never fails on valid JSON other than with an *Error.
// dst escapes to the heap; see [Decode].
func (b *Binder) Bind(args []byte, dst unsafe.Pointer) error {
	if b.anyKey {
		return b.unmarshalAll(args, dst)
	}
	var buf [4]pending
	pend, soft, err := b.scan(args, dst, buf[:0])
	if err != nil {
		return err
	}
	if b.whole {
		return b.unmarshalAll(args, dst)
	}
	for _, p := range pend {
		f := &b.fields[p.field]
		var e error
		if fp, err := f.locate(dst); err != nil {
			e = &savedError{msg: "arguments: " + err.Error()}
		} else if err := unmarshalAt(p.raw, f.typ, fp); err != nil {
			e = convert(err, f.path+string(f.name), f.typ)
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
		return &Error{soft.msg}
	}
	return nil
}

// pending is a value for a field that needs encoding/json.
type pending struct {
	field int
	seq   int // the member's position in the object
	raw   []byte
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
func (b *Binder) scan(args []byte, dst unsafe.Pointer, pend []pending) (_ []pending, soft *savedError, err error) {
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
		return nil, nil, &Error{"arguments are not a JSON object"}
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
			return nil, nil, &Error{fmt.Sprintf("unexpected argument %q", string(key))}
		}
		switch {
		case n < 0 || b.whole: // ignored, or decoded later as a whole
			end = skipValue(args, i)
		case b.fields[n].kind == kindJSON:
			end = skipValue(args, i)
			if end >= 0 {
				pend = append(pend, pending{field: n, seq: seq, raw: args[i:end]})
			}
		default:
			var e *savedError
			end, e = b.fields[n].decode(args, i, dst)
			if e != nil && soft == nil {
				e.seq, soft = seq, e
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
		return nil, nil, &Error{fmt.Sprintf("missing required argument %q", missing[0])}
	case len(missing) > 1:
		return nil, nil, &Error{fmt.Sprintf("missing required arguments %q", missing)}
	}
	return pend, soft, nil
}

var (
	errMalformed = &Error{"arguments: malformed JSON"}
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
// struct pointers on the way as encoding/json does.
func (f *field) locate(dst unsafe.Pointer) (unsafe.Pointer, error) {
	for _, h := range f.hops {
		// The pointer field lies h.offset bytes into the struct at dst.
		pp := (*unsafe.Pointer)(unsafe.Add(dst, h.offset))
		if *pp == nil {
			if !h.settable {
				return nil, fmt.Errorf("json: cannot set embedded pointer to unexported struct: %v", h.elem)
			}
			*pp = reflect.New(h.elem).UnsafePointer()
		}
		dst = *pp
	}
	return unsafe.Add(dst, f.offset), nil
}

// decode decodes the value at args[i] into f of the struct at dst, and
// returns the value's end (-1 if malformed), with the type error encoding/json
// would save, if any.
func (f *field) decode(args []byte, i int, dst unsafe.Pointer) (int, *savedError) {
	end, flags := -1, 0
	switch {
	case i >= len(args):
	case args[i] == '"':
		end, flags = scanString(args, i)
	default:
		end = skipValue(args, i)
	}
	if end <= i {
		return -1, nil // malformed
	}
	p, err := f.locate(dst)
	if err != nil {
		return end, &savedError{msg: "arguments: " + err.Error()}
	}
	v := args[i:end]
	if v[0] == 'n' { // null: a pointer becomes nil, anything else stays
		if f.ptr {
			*(*unsafe.Pointer)(p) = nil
		}
		return end, nil
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
	ok := false
	switch f.kind {
	case kindString:
		if v[0] == '"' {
			*(*string)(p), ok = stringOf(v[1:len(v)-1], flags), true
		}
	case kindBool:
		if v[0] == 't' || v[0] == 'f' {
			*(*bool)(p), ok = v[0] == 't', true
		}
	case kindInt, kindUint, kindFloat:
		if v[0] != '-' && (v[0] < '0' || v[0] > '9') {
			break
		}
		if !storeNumber(p, f.kind, f.bits, v) {
			return end, f.typeError("number " + string(v))
		}
		ok = true
	}
	if !ok {
		return end, f.typeError(jsonKind(v[0]))
	}
	return end, nil
}

func (f *field) typeError(value string) *savedError {
	return &savedError{msg: fmt.Sprintf("argument %q: cannot use JSON %s as %v", f.path+string(f.name), value, f.typ)}
}

// jsonKind names the kind of a JSON value by its first byte, as
// encoding/json's type errors do.
func jsonKind(c byte) string {
	switch c {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}

// unmarshalAll decodes args into dst with encoding/json.
func (b *Binder) unmarshalAll(args []byte, dst unsafe.Pointer) error {
	if args == nil {
		args = emptyObject
	}
	if err := unmarshalAt(args, b.typ, dst); err != nil {
		err = convert(err, "", nil)
		if e, ok := err.(*savedError); ok {
			return &Error{e.msg}
		}
		return err
	}
	return nil
}

// unmarshalAt decodes raw with encoding/json into the value of type t at p,
// on top of what is there, as encoding/json decodes a struct field.
func unmarshalAt(raw []byte, t reflect.Type, p unsafe.Pointer) error {
	v := reflect.NewAt(t, p)
	return json.Unmarshal(raw, v.Interface())
}

// convert turns an error of json.Unmarshal for the argument at path of type
// t (or the whole object: "", nil) into an *Error, or a *savedError for the
// errors encoding/json saves and carries on after.
func convert(err error, path string, t reflect.Type) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		typ := te.Type
		if te.Field == "" && t != nil && typ == reflect.PointerTo(t) {
			// A TextUnmarshaler given a non-string names the type of the
			// value json.Unmarshal was given; in a struct that is the field.
			typ = t
		}
		if te.Field != "" && path != "" {
			path += "." + te.Field
		} else if te.Field != "" {
			path = te.Field
		}
		if path == "" {
			return &savedError{msg: fmt.Sprintf("arguments: cannot use JSON %s as %v", te.Value, typ)}
		}
		return &savedError{msg: fmt.Sprintf("argument %q: cannot use JSON %s as %v", path, te.Value, typ)}
	}
	msg := "arguments: " + err.Error()
	if _, ok := err.(base64.CorruptInputError); ok {
		return &savedError{msg: msg}
	}
	return &Error{msg}
}
