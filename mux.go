package wsrpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/wsrpc/wsrpc/internal/bind"
	"github.com/wsrpc/wsrpc/internal/wire"
)

// Handler answers calls to one method. args is the call's keyword arguments
// as a JSON object ({} when the caller sent none); the handler owns it. The
// result is encoded with encoding/json; its result_type is derived from its
// Go type (see [Mux]).
//
// ctx is canceled when the call's connection closes or, over the negotiated
// extension, when the caller gives up or its deadline passes; it may also be
// canceled once the handler returned, so work that outlives the call should
// use [Conn.Context]. [ConnFromContext] returns the calling connection, so
// that a handler can call its caller back.
type Handler interface {
	ServeRPC(ctx context.Context, args json.RawMessage) (any, error)
}

// HandlerFunc adapts a function to a [Handler].
type HandlerFunc func(ctx context.Context, args json.RawMessage) (any, error)

// ServeRPC calls f(ctx, args).
func (f HandlerFunc) ServeRPC(ctx context.Context, args json.RawMessage) (any, error) {
	return f(ctx, args)
}

// Mux is a set of named methods that one side of a connection exposes to the
// other. The zero Mux is empty and ready to use; a nil *Mux exposes only the
// built-ins. Methods may be added while connections use the Mux; a Mux is
// safe for concurrent use.
//
// Every peer also answers the built-ins _ping_ (returns "pong") and
// _get_channel_id_ (returns the connection's [Conn.ID]). Names that begin
// with "_" are reserved: they cannot be registered and are never callable
// from the wire.
//
// Results carry a result_type named as the Python library names them: "str"
// for strings, "int" and "float" for numbers, "bool", "List" for slices and
// arrays, "Dict" for maps, a struct's Go type name for structs, and
// "unknown-type" for null.
type Mux struct {
	mu      sync.Mutex // serializes writers
	methods atomic.Pointer[map[string]*method]
}

// NewMux returns an empty Mux.
func NewMux() *Mux { return new(Mux) }

// method is the internal form of a registered handler: it appends its
// result's JSON to out and returns the result's type name. h is what the
// frame's decoding found out about args.
type method struct {
	serve   func(ctx context.Context, args []byte, h bind.Hint, out []byte) ([]byte, string, error)
	ordered bool   // HandleOrdered: one call at a time per connection, in arrival order
	name    string // as registered: the Observer's CallInfo.Method, without a copy per call
}

func (m *Mux) lookup(name []byte) *method {
	if m == nil {
		return nil
	}
	p := m.methods.Load()
	if p == nil {
		return nil
	}
	return (*p)[string(name)]
}

func (m *Mux) add(name string, h *method) {
	if name == "" {
		panic("wsrpc: empty method name")
	}
	if strings.HasPrefix(name, "_") {
		panic("wsrpc: method name " + strconv.Quote(name) + " is reserved: names beginning with _ are private")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.methods.Load()
	next := make(map[string]*method, 1)
	if old != nil {
		if _, dup := (*old)[name]; dup {
			panic("wsrpc: method " + strconv.Quote(name) + " registered twice")
		}
		for k, v := range *old {
			next[k] = v
		}
	}
	h.name = name
	next[name] = h
	m.methods.Store(&next)
}

// Methods returns the names of the registered methods, sorted.
func (m *Mux) Methods() []string {
	if m == nil {
		return nil
	}
	p := m.methods.Load()
	if p == nil {
		return nil
	}
	names := make([]string, 0, len(*p))
	for k := range *p {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// Handle registers h under name. It panics if name is empty, begins with
// "_", or is already registered.
func (m *Mux) Handle(name string, h Handler) {
	m.add(name, rawMethod(h))
}

// rawMethod is the method serving h.
func rawMethod(h Handler) *method {
	return &method{serve: func(ctx context.Context, args []byte, _ bind.Hint, out []byte) ([]byte, string, error) {
		if args == nil {
			args = []byte("{}")
		} else {
			args = bytes.Clone(args)
		}
		res, err := h.ServeRPC(ctx, args)
		if err != nil {
			return out, "", err
		}
		return appendResult(out, res, "")
	}}
}

// HandleOrdered registers h under name, like [Mux.Handle], except that the
// calls of ordered methods on one connection run one at a time, in the
// order their requests arrived: each starts once the one before it
// returned. Calls of other methods still run concurrently with them. A
// call waiting for its turn counts against MaxConcurrentCalls and
// MaxCallBytes as a running one does, and its context ends with the
// connection as a running one's does.
//
// It is for a peer's calls whose order matters, such as the events a
// pub/sub server pushes: h should be quick, since a call that takes long
// delays the ordered calls behind it, or pass its turn on ([PassTurn])
// once the part that must be in order is done.
func (m *Mux) HandleOrdered(name string, h Handler) {
	meth := rawMethod(h)
	meth.ordered = true
	m.add(name, meth)
}

// HandleFunc registers f under name, like [Mux.Handle].
func (m *Mux) HandleFunc(name string, f func(ctx context.Context, args json.RawMessage) (any, error)) {
	m.Handle(name, HandlerFunc(f))
}

// Register exposes fn as the method name of m, with typed arguments and
// result. A is a struct whose exported fields are the keyword arguments,
// named by their json tags (struct{} for none), or a map type that accepts
// any keyword arguments. A field is a required argument unless its json tag
// has omitempty or omitzero, or it is a pointer. Calls with a required
// argument missing, an argument A has no field for, or a value of the wrong
// type fail with [CodeInvalidParams] before fn runs. R is encoded with
// encoding/json.
//
// Register panics if name is invalid or taken, or if A is neither a struct
// nor a map with string keys.
func Register[A, R any](m *Mux, name string, fn func(ctx context.Context, args A) (R, error)) {
	spec, err := newArgSpec(reflect.TypeFor[A]())
	if err != nil {
		panic("wsrpc: Register " + strconv.Quote(name) + ": " + err.Error())
	}
	static := staticTypeName(reflect.TypeFor[R]())
	m.add(name, &method{serve: func(ctx context.Context, args []byte, h bind.Hint, out []byte) ([]byte, string, error) {
		a, err := bindArgs[A](spec, args, h)
		if err != nil {
			return out, "", err
		}
		r, err := fn(ctx, a)
		if err != nil {
			return out, "", err
		}
		return appendResult(out, r, static)
	}})
}

// errUnencodable is the internal error for a result encoding/json refuses.
var errUnencodable = errors.New("result cannot be encoded as JSON")

// appendResult appends r's JSON to out and returns its result_type; static
// is the type name known at registration ("" when it depends on the value).
func appendResult[R any](out []byte, r R, static string) ([]byte, string, error) {
	switch v := any(r).(type) {
	case string:
		return wire.AppendString(out, v), "str", nil
	case RawText:
		return wire.AppendString(out, unsafe.String(unsafe.SliceData(v), len(v))), "str", nil
	case bool:
		return strconv.AppendBool(out, v), "bool", nil
	case int:
		return strconv.AppendInt(out, int64(v), 10), "int", nil
	case int64:
		return strconv.AppendInt(out, v, 10), "int", nil
	case float64:
		return appendFloat(out, v, 64)
	case float32:
		return appendFloat(out, float64(v), 32)
	case json.RawMessage:
		if len(v) == 0 {
			return append(out, "null"...), "unknown-type", nil
		}
		if !json.Valid(v) {
			return out, "", fmt.Errorf("%w: invalid json.RawMessage", errUnencodable)
		}
		return append(out, v...), rawTypeName(v), nil
	case nil:
		return append(out, "null"...), "unknown-type", nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		return out, "", fmt.Errorf("%w: %v", errUnencodable, err)
	}
	typ := static
	if len(b) == 4 && string(b) == "null" {
		typ = "unknown-type"
	} else if typ == "" {
		typ = staticTypeName(reflect.TypeOf(r))
		if typ == "" {
			typ = rawTypeName(b)
		}
	}
	out = append(out, b...)
	if typ == "float" {
		out = pointZero(out, len(out)-len(b))
	}
	return out, typ, nil
}

// appendFloat appends a float result as encoding/json writes it, keeping a
// fractional part: a Python peer decodes 3.0 as a float, 3 as an int.
func appendFloat(out []byte, f float64, bits int) ([]byte, string, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return out, "", fmt.Errorf("%w: %v is not a JSON number", errUnencodable, f)
	}
	start := len(out)
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (bits == 64 && (abs < 1e-6 || abs >= 1e21) ||
		bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21)) {
		format = 'e'
	}
	out = strconv.AppendFloat(out, f, format, -1, bits)
	if format == 'e' { // e-09 to e-9, as encoding/json
		if n := len(out); n-start >= 4 && out[n-4] == 'e' && out[n-3] == '-' && out[n-2] == '0' {
			out[n-2] = out[n-1]
			out = out[:n-1]
		}
	}
	return pointZero(out, start), "float", nil
}

// pointZero adds ".0" to the number out[start:] if it has no fraction or
// exponent.
func pointZero(out []byte, start int) []byte {
	if bytes.ContainsAny(out[start:], ".eE") {
		return out
	}
	return append(out, ".0"...)
}

var rawMessageType = reflect.TypeFor[json.RawMessage]()

// staticTypeName names a Go type as the Python library would name the
// result, or returns "" when only the value can tell (interfaces, raw JSON).
func staticTypeName(t reflect.Type) string {
	if t == nil {
		return ""
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == rawMessageType {
		return ""
	}
	if t.Implements(jsonMarshalerType) || reflect.PointerTo(t).Implements(jsonMarshalerType) {
		if t.Kind() == reflect.Struct && t.Name() != "" {
			return t.Name()
		}
		return ""
	}
	switch t.Kind() {
	case reflect.String:
		return "str"
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "int"
	case reflect.Float32, reflect.Float64:
		return "float"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "str" // encoding/json writes []byte as a base64 string
		}
		return "List"
	case reflect.Array:
		return "List"
	case reflect.Map:
		return "Dict"
	case reflect.Struct:
		if t.Name() == "" {
			return "Dict"
		}
		return t.Name()
	}
	return ""
}

var jsonMarshalerType = reflect.TypeFor[json.Marshaler]()

// rawTypeName names the JSON kind of an encoded value.
func rawTypeName(b []byte) string {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 {
		return "unknown-type"
	}
	switch b[0] {
	case '"':
		return "str"
	case 't', 'f':
		return "bool"
	case '[':
		return "List"
	case '{':
		return "Dict"
	case 'n':
		return "unknown-type"
	}
	if bytes.ContainsAny(b, ".eE") {
		return "float"
	}
	return "int"
}
