package wsrpc

import (
	"encoding/json"
	"reflect"
	"unsafe"

	"github.com/wsrpc/wsrpc/internal/bind"
	"github.com/wsrpc/wsrpc/internal/wire"
)

// RawText is a string argument's text that refers to the frame it arrived
// in rather than to a copy, as [database/sql.RawBytes] refers to a driver's
// memory: it is valid only until the handler returns. A handler that keeps
// it, or hands it to a goroutine that outlives the call, must copy it
// (string(t), or [RawText.String]). In exchange, a large argument costs no
// allocation and no copy: use it for text that the handler reads, or sends
// on, at once. A string with escapes is unescaped into memory of its own.
//
// As an argument field of a method registered with [Register], it takes a
// JSON string; as a result, or inside one, it is sent as a JSON string
// (result_type "str"). Decoded by encoding/json, as in the result of
// [Call], it is a copy and stays valid.
type RawText []byte

func init() { bind.Borrowed = reflect.TypeFor[RawText]() }

// String returns a copy of t as a string.
func (t RawText) String() string { return string(t) }

// MarshalJSON encodes t as a JSON string.
func (t RawText) MarshalJSON() ([]byte, error) {
	return wire.AppendString(nil, unsafe.String(unsafe.SliceData(t), len(t))), nil
}

// UnmarshalJSON decodes a JSON string into a copy of its text.
func (t *RawText) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*t = RawText(s)
	return nil
}
