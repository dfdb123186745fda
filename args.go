package wsrpc

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/wsrpc/wsrpc/internal/wire"
)

// argSpec describes the keyword arguments a typed method accepts. It is
// computed once, at registration.
type argSpec struct {
	anyKeys bool           // a map: every key is welcome, none required
	names   []string       // json names of the fields
	req     []bool         // req[i]: names[i] is required
	index   map[string]int // name -> position in names
}

func newArgSpec(t reflect.Type) (*argSpec, error) {
	switch t.Kind() {
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return nil, fmt.Errorf("argument type %v: map keys must be strings", t)
		}
		return &argSpec{anyKeys: true}, nil
	case reflect.Struct:
		s := &argSpec{index: make(map[string]int)}
		s.collect(t, make(map[reflect.Type]bool))
		return s, nil
	}
	return nil, fmt.Errorf("argument type %v: must be a struct (keyword arguments by field) or a map", t)
}

// collect adds t's fields as encoding/json sees them: exported fields named
// by their json tags, with untagged embedded structs flattened.
func (s *argSpec) collect(t reflect.Type, visiting map[reflect.Type]bool) {
	if visiting[t] {
		return
	}
	visiting[t] = true
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		ft := f.Type
		if f.Anonymous && name == "" {
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				s.collect(ft, visiting)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		optional := f.Type.Kind() == reflect.Pointer
		for o := range strings.SplitSeq(opts, ",") {
			if o == "omitempty" || o == "omitzero" {
				optional = true
			}
		}
		if _, dup := s.index[name]; dup {
			continue
		}
		s.index[name] = len(s.names)
		s.names = append(s.names, name)
		s.req = append(s.req, !optional)
	}
}

// find returns the position of key, matching as encoding/json does: exactly,
// else without regard to case.
func (s *argSpec) find(key []byte) (int, bool) {
	if i, ok := s.index[string(key)]; ok {
		return i, true
	}
	for i, n := range s.names {
		if strings.EqualFold(n, string(key)) {
			return i, true
		}
	}
	return 0, false
}

// bind checks args against the spec and decodes them into dst, a pointer.
// Its errors are *Error with CodeInvalidParams.
func (s *argSpec) bind(args []byte, dst any) error {
	if args == nil {
		args = emptyObject
	}
	if !s.anyKeys {
		var small [64]bool
		seen := small[:0]
		if len(s.names) <= len(small) {
			seen = small[:len(s.names)]
		} else {
			seen = make([]bool, len(s.names))
		}
		var unknown []byte
		wire.Keys(args, func(key []byte) {
			if i, ok := s.find(key); ok {
				seen[i] = true
			} else if unknown == nil {
				unknown = key
			}
		})
		if unknown != nil {
			return Errorf(CodeInvalidParams, "unexpected argument %q", unknown)
		}
		var missing []string
		for i, ok := range seen {
			if !ok && s.req[i] {
				missing = append(missing, s.names[i])
			}
		}
		if len(missing) == 1 {
			return Errorf(CodeInvalidParams, "missing required argument %q", missing[0])
		}
		if len(missing) > 1 {
			return Errorf(CodeInvalidParams, "missing required arguments %q", missing)
		}
	}
	if err := json.Unmarshal(args, dst); err != nil {
		if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
			if te.Field != "" {
				return Errorf(CodeInvalidParams, "argument %q: cannot use JSON %s as %v", te.Field, te.Value, te.Type)
			}
			return Errorf(CodeInvalidParams, "arguments: cannot use JSON %s as %v", te.Value, te.Type)
		}
		return Errorf(CodeInvalidParams, "arguments: %v", err)
	}
	return nil
}

var emptyObject = []byte("{}")
