package bind

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The errors of this file go to the peer that made the call. They speak of
// JSON only: where the value is (the argument's name, then object keys and
// array indices, as the peer sent them: "opts.size", "items[3]"), what JSON
// the argument takes and what it got. They never name Go types, fields or
// packages, and quote what the peer sent only in short.

const (
	maxShown   = 32 // bytes of a number or a string quoted in a message
	maxKeyPath = 64 // bytes of each key in a path
)

// argMessage is the message about the argument at path.
func argMessage(path []byte, text string) string {
	if path == nil {
		return "arguments: " + text
	}
	return "argument " + strconv.Quote(string(path)) + ": " + text
}

// appendKey appends the object key key (unescaped) to the path path: as it
// is at the top, else after a dot, or quoted in brackets if it would not
// read as one key.
func appendKey(path, key []byte) []byte {
	k := shorten(key, maxKeyPath)
	switch {
	case len(path) == 0 && len(key) > 0:
		return append(path, k...)
	case plainKey(key):
		return append(append(path, '.'), k...)
	}
	return append(strconv.AppendQuote(append(path, '['), k), ']')
}

func appendIndex(path []byte, n int) []byte {
	return append(strconv.AppendInt(append(path, '['), int64(n), 10), ']')
}

// plainKey reports whether key reads as one key after a dot.
func plainKey(key []byte) bool {
	if len(key) == 0 {
		return false
	}
	for _, r := range string(key) {
		if strings.ContainsRune(`.[]"\`, r) || !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return false
		}
	}
	return true
}

// shorten returns b, cut to at most n bytes (on a rune boundary) with "..."
// if it is longer.
func shorten(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	n -= 3
	for n > 0 && !utf8.RuneStart(b[n]) {
		n--
	}
	return string(b[:n]) + "..."
}

// quoteShort quotes the contents s of a string token, unescaped and
// shortened.
func quoteShort(s []byte) string {
	u := appendUnquoted(nil, s)
	if len(u) <= maxShown {
		return strconv.Quote(string(u))
	}
	short := shorten(u, maxShown)
	return strconv.Quote(short[:len(short)-3]) + "..."
}

// given names the kind of the JSON value starting with c.
func given(c byte) string {
	switch c {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// target describes what a Go type takes in JSON: the kind the binder
// decodes it as (kindJSON for any other) with its size, and in words.
// want is "" for a type that takes no JSON value but null.
func target(t reflect.Type) (k kind, bits int, want string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == numberType:
		return kindJSON, 0, "a number or a string holding a number"
	case t.Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(jsonUnmarshaler):
		return kindJSON, 0, "" // its own decoding decides
	case t.Implements(textUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler):
		return kindJSON, 0, "a string"
	}
	switch t.Kind() {
	case reflect.String:
		return kindString, 0, "a string"
	case reflect.Bool:
		return kindBool, 0, "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return kindInt, t.Bits(), "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return kindUint, t.Bits(), "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return kindFloat, t.Bits(), "a number"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return kindJSON, 0, "a base64 string"
		}
		return kindJSON, 0, "an array"
	case reflect.Array:
		return kindJSON, 0, "an array"
	case reflect.Map, reflect.Struct:
		return kindJSON, 0, "an object"
	case reflect.Interface:
		if t.NumMethod() == 0 {
			return kindJSON, 0, "any value"
		}
	}
	return kindJSON, 0, ""
}

func numeric(k kind) bool { return k == kindInt || k == kindUint || k == kindFloat }

// mismatch says that the JSON value v (a whole token, or its start) does
// not fit a target of kind k and size bits that takes want.
func mismatch(k kind, bits int, want string, v []byte) string {
	got := given(v[0])
	switch {
	case numeric(k) && got == "a number":
		return "expected " + numberWant(k, bits, v, want) + ", got number " + shorten(v, maxShown)
	case want == "" || want == got:
		return "cannot be " + got
	}
	return "expected " + want + ", got " + got
}

// numberWant says what a target of kind k (a number kind) and size bits
// takes, in view of the number lit it could not take; plain is what it
// takes in general.
func numberWant(k kind, bits int, lit []byte, plain string) string {
	if !validNumber(lit) {
		return plain
	}
	if k == kindFloat {
		if _, err := strconv.ParseFloat(string(lit), bits); errors.Is(err, strconv.ErrRange) {
			max := strconv.FormatFloat(math.MaxFloat64, 'g', -1, 64)
			if bits == 32 {
				max = strconv.FormatFloat(math.MaxFloat32, 'g', -1, 32)
			}
			return "a number from -" + max + " to " + max
		}
		return plain
	}
	neg, whole, digits, long := decimal(lit)
	switch {
	case neg && k == kindUint:
		return "a non-negative integer"
	case !whole:
		return plain
	case long || !inRange(k, bits, neg, digits):
		if k == kindUint {
			return "an integer from 0 to " + strconv.FormatUint(math.MaxUint64>>(64-bits), 10)
		}
		return "an integer from " + strconv.FormatInt(math.MinInt64>>(64-bits), 10) + " to " +
			strconv.FormatInt(math.MaxInt64>>(64-bits), 10)
	case bytes.ContainsAny(lit, ".eE"):
		return "an integer without a fraction or exponent"
	}
	return plain
}

// validNumber reports whether lit is a JSON number.
func validNumber(lit []byte) bool {
	i := 0
	digits := func() bool {
		j := i
		for i < len(lit) && '0' <= lit[i] && lit[i] <= '9' {
			i++
		}
		return i > j
	}
	if i < len(lit) && lit[i] == '-' {
		i++
	}
	if i < len(lit) && lit[i] == '0' {
		i++
	} else if !digits() {
		return false
	}
	if i < len(lit) && lit[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(lit) && (lit[i] == 'e' || lit[i] == 'E') {
		i++
		if i < len(lit) && (lit[i] == '+' || lit[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	return i == len(lit)
}

// decimal reads the JSON number lit: its sign, whether it is a whole
// number and, if so, its decimal digits without leading zeros ("" for
// zero), unless it has more than 20 (long), more than any 64-bit integer.
func decimal(lit []byte) (neg, whole bool, digits []byte, long bool) {
	i := 0
	if i < len(lit) && lit[i] == '-' {
		neg = true
		i++
	}
	var mant []byte
	exp := 0
	for ; i < len(lit) && '0' <= lit[i] && lit[i] <= '9'; i++ {
		mant = append(mant, lit[i])
	}
	if i < len(lit) && lit[i] == '.' {
		for i++; i < len(lit) && '0' <= lit[i] && lit[i] <= '9'; i++ {
			mant = append(mant, lit[i])
			exp--
		}
	}
	if i < len(lit) && (lit[i] == 'e' || lit[i] == 'E') {
		i++
		sign := 1
		if i < len(lit) && (lit[i] == '+' || lit[i] == '-') {
			if lit[i] == '-' {
				sign = -1
			}
			i++
		}
		e := 0
		for ; i < len(lit) && '0' <= lit[i] && lit[i] <= '9'; i++ {
			e = min(e*10+int(lit[i]-'0'), 1<<30)
		}
		exp += sign * e
	}
	mant = bytes.TrimLeft(mant, "0")
	for len(mant) > 0 && mant[len(mant)-1] == '0' {
		mant = mant[:len(mant)-1]
		exp++
	}
	if len(mant) == 0 {
		return neg, true, nil, false
	}
	if exp < 0 {
		return neg, false, nil, false
	}
	if len(mant)+exp > 20 {
		return neg, true, nil, true
	}
	return neg, true, append(mant, bytes.Repeat([]byte{'0'}, exp)...), false
}

// inRange reports whether the whole number with the given sign and digits
// fits an integer of kind k and size bits.
func inRange(k kind, bits int, neg bool, digits []byte) bool {
	if len(digits) == 0 {
		return k == kindInt || !neg
	}
	u, err := strconv.ParseUint(string(digits), 10, 64)
	switch {
	case err != nil:
		return false
	case k == kindUint:
		return !neg && u <= math.MaxUint64>>(64-bits)
	case neg:
		return u <= 1<<(bits-1)
	}
	return u <= 1<<(bits-1)-1
}

// valueAt finds, in the JSON value raw, the innermost value that holds the
// byte at pos, and appends its path below raw to path. It returns the
// value's bounds in raw, or those of a key if pos is in an object's key
// (the path is then the object's); start is -1 if pos is outside raw's
// value. A number also holds the byte just after it.
func valueAt(path, raw []byte, pos int) (_ []byte, start, end int, key bool) {
	i := skipSpace(raw, 0)
	end = skipValue(raw, i)
	if end <= i || pos < i || pos > end || pos == end && !numberStart(raw[i]) {
		return path, -1, -1, false
	}
	for {
		// raw[i:end] holds pos.
		c := raw[i]
		if pos == i || c != '{' && c != '[' {
			return path, i, end, false
		}
		j := skipSpace(raw, i+1)
		inner := false
		for n := 0; j < end && raw[j] != '}' && raw[j] != ']' && pos >= j; n++ {
			var k []byte
			if c == '{' {
				ke, flags := scanString(raw, j)
				if ke < 0 {
					return path, -1, -1, false
				}
				if pos < ke {
					return path, j, ke, true
				}
				k = raw[j+1 : ke-1]
				if flags != 0 {
					k = appendUnquoted(nil, k)
				}
				if j = skipSpace(raw, ke); j >= end || raw[j] != ':' {
					return path, -1, -1, false
				}
				j = skipSpace(raw, j+1)
			}
			ve := skipValue(raw, j)
			if ve <= j || ve > end {
				return path, -1, -1, false
			}
			if pos >= j && (pos < ve || pos == ve && numberStart(raw[j])) {
				if c == '{' {
					path = appendKey(path, k)
				} else {
					path = appendIndex(path, n)
				}
				i, end, inner = j, ve, true
				break
			}
			if j = skipSpace(raw, ve); j < end && raw[j] == ',' {
				j = skipSpace(raw, j+1)
			}
		}
		if !inner { // between members: the container itself
			return path, i, end, false
		}
	}
}

func numberStart(c byte) bool { return c == '-' || '0' <= c && c <= '9' }

// fits reports whether the JSON value (or key) v could be what an
// UnmarshalTypeError's Value describes.
func fits(value string, v []byte, key bool) bool {
	if len(v) == 0 {
		return false
	}
	if key {
		return strings.HasPrefix(value, "number ")
	}
	c := v[0]
	switch {
	case value == "string":
		return c == '"'
	case value == "bool":
		return c == 't' || c == 'f' || c == '"'
	case value == "number" || strings.HasPrefix(value, "number "):
		return numberStart(c) || c == '"'
	case value == "array":
		return c == '['
	case value == "object":
		return c == '{'
	}
	return false
}

// tokenOf is a JSON value of the kind an UnmarshalTypeError's Value
// describes.
func tokenOf(value string) []byte {
	switch {
	case strings.HasPrefix(value, "number "):
		return []byte(value[len("number "):])
	case value == "string":
		return []byte(`""`)
	case value == "bool":
		return []byte("true")
	case value == "array":
		return []byte("[]")
	case value == "object":
		return []byte("{}")
	case value == "null":
		return []byte("null")
	}
	return []byte("0")
}

// typeMessage describes the type error te of json.Unmarshal on raw, the
// value of the argument at prefix (nil: raw is all the arguments).
func typeMessage(te *json.UnmarshalTypeError, raw, prefix []byte) string {
	path, start, end, key := valueAt(prefix, raw, int(te.Offset)-1)
	var v []byte
	if start >= 0 && fits(te.Value, raw[start:end], key) {
		v = raw[start:end]
	} else {
		// Not where the offset says: an error of some json.Unmarshaler.
		path, key, v = prefix, false, tokenOf(te.Value)
		if len(v) == 0 {
			v = []byte("0")
		}
	}
	var k kind
	var bits int
	var want string
	if te.Type != nil {
		k, bits, want = target(te.Type)
	}
	switch {
	case key && numeric(k):
		s := appendUnquoted(nil, v[1:len(v)-1])
		return argMessage(path, "expected each key to be "+numberWant(k, bits, s, want)+", got key "+quoteShort(v[1:len(v)-1]))
	case key:
		return argMessage(path, "cannot have key "+quoteShort(v[1:len(v)-1]))
	case v[0] == '"' && te.Value != "string" && want != "": // the value of a ,string field
		s := appendUnquoted(nil, v[1:len(v)-1])
		if numeric(k) {
			want = numberWant(k, bits, s, want)
		}
		return argMessage(path, "expected a string holding "+want+", got "+quoteShort(v[1:len(v)-1]))
	}
	return argMessage(path, mismatch(k, bits, want, v))
}

// otherMessage describes an error of json.Unmarshal other than a type error
// on raw, the value of the argument at path, for field f (nil if the
// arguments are a map). It says whether encoding/json saves the error and
// carries on, and returns err as the cause if msg does not tell it: an
// error of the type's own decoding, which may name Go types.
func otherMessage(err error, raw, path []byte, f *field) (msg string, saved bool, cause error) {
	var t reflect.Type
	if f != nil {
		t = f.typ
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
	}
	var ce base64.CorruptInputError
	text := err.Error()
	switch {
	case len(raw) == 0 || errors.As(err, new(*json.SyntaxError)):
		return errMalformed.Msg, false, nil // not from valid JSON
	case errors.As(err, &ce):
		return argMessage(path, "invalid base64 data at byte "+strconv.FormatInt(int64(ce), 10)), true, nil
	case strings.HasPrefix(text, "json: cannot set embedded pointer to unexported struct"):
		return argMessage(path, "cannot be set"), true, nil
	case f != nil && f.quoted && strings.Contains(text, ",string struct tag"):
		k, bits, want := target(t)
		if k == kindString {
			want = "a JSON string"
		}
		if raw[0] != '"' {
			return argMessage(path, "expected a string holding "+want+", got "+given(raw[0])), false, nil
		}
		if numeric(k) {
			want = numberWant(k, bits, appendUnquoted(nil, raw[1:len(raw)-1]), want)
		}
		return argMessage(path, "expected a string holding "+want+", got "+quoteShort(raw[1:len(raw)-1])), false, nil
	case t == numberType && raw[0] == '"' && strings.HasPrefix(text, "json: invalid number literal"):
		_, _, want := target(t)
		return argMessage(path, "expected "+want+", got "+quoteShort(raw[1:len(raw)-1])), false, nil
	}
	return argMessage(path, "invalid value"), false, err
}
