package wsrpc

import (
	"reflect"

	"github.com/wsrpc/wsrpc/internal/bind"
)

// argSpec binds the keyword arguments of a typed method: a binder compiled
// once, at registration, that decodes the common field kinds without
// encoding/json and checks for missing and unknown arguments.
type argSpec struct{ b *bind.Binder }

func newArgSpec(t reflect.Type) (*argSpec, error) {
	b, err := bind.Compile(t)
	if err != nil {
		return nil, err
	}
	return &argSpec{b}, nil
}

func mustArgSpec[A any]() *argSpec {
	s, err := newArgSpec(reflect.TypeFor[A]())
	if err != nil {
		panic(err)
	}
	return s
}

// bindArgs decodes args into a new A; its errors are *Error with
// CodeInvalidParams. utf8ok says args is known to be valid UTF-8.
func bindArgs[A any](s *argSpec, args []byte, utf8ok bool) (A, error) {
	var a A
	var err error
	if utf8ok {
		a, err = bind.DecodeUTF8[A](s.b, args)
	} else {
		a, err = bind.Decode[A](s.b, args)
	}
	if err != nil {
		return a, &Error{Code: CodeInvalidParams, Message: err.Error()}
	}
	return a, nil
}
