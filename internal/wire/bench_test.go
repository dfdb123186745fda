package wire

import (
	"strconv"
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

// BenchmarkDecodeText decodes request frames whose text argument has n
// bytes, around the sizes where str switches to bulk scanning.
func BenchmarkDecodeText(b *testing.B) {
	for _, n := range []int{32, 64, 128, 512} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			frame := benchFrame(n)
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

// BenchmarkAppendStringSizes encodes plain ASCII of n bytes, and text with
// a little non-ASCII and escaping.
func BenchmarkAppendStringSizes(b *testing.B) {
	for _, n := range []int{16, 32, 64, 128, 512} {
		s := strings.Repeat("abcdefghijklmnop", n/16)
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			buf := make([]byte, 0, 2*n)
			b.SetBytes(int64(n))
			for b.Loop() {
				buf = AppendString(buf[:0], s)
			}
		})
	}
	s := strings.Repeat(`Ünïcode "quoted" text, with a tab	and a line
`, 32)
	b.Run("mixed", func(b *testing.B) {
		buf := make([]byte, 0, 2*len(s))
		b.SetBytes(int64(len(s)))
		for b.Loop() {
			buf = AppendString(buf[:0], s)
		}
	})
}
