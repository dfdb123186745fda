package wire

import (
	"strings"
	"testing"
)

// benchFrame is a request frame of the kind the server's hot path sees.
func benchFrame(n int) []byte {
	return []byte(`{"request": {"method": "echo", "arguments": {"text": "` + strings.Repeat("abcdefghijklmnop", n/16) +
		`"}, "call_id": "8a4f0c3b9d2e4f6a8b1c2d3e4f5a6b7c"}, "response": null}`)
}

func BenchmarkDecode(b *testing.B) {
	for _, tc := range []struct {
		name string
		n    int
	}{{"130B", 16}, {"16KiB", 16 << 10}} {
		b.Run(tc.name, func(b *testing.B) {
			frame := benchFrame(tc.n)
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			var f Frame
			for b.Loop() {
				if err := Decode(frame, &f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
