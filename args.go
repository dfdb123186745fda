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
// CodeInvalidParams. h is what the frame's decoding found out about args.
func bindArgs[A any](s *argSpec, args []byte, h bind.Hint) (A, error) {
	a, err := bind.DecodeHint[A](s.b, args, h)
	if err != nil {
		return a, &Error{Code: CodeInvalidParams, Message: err.Error()}
	}
	return a, nil
}
