package pgbroker

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzPayload: every message whose payload fits comes back byte for
// byte, its payload is text that NOTIFY takes (UTF-8, or ASCII for a
// database of another encoding, without NUL, under 8000 bytes), and text
// messages go as they are.
func FuzzPayload(f *testing.F) {
	if n := base64.RawStdEncoding.EncodedLen(MaxBinaryMessage + 1); 1+n <= maxPayload {
		f.Fatalf("MaxBinaryMessage+1 bytes fit in base64 (%d bytes)", 1+n)
	}
	for _, seed := range []string{"", "x", "\x00", "\x01", "\x01abc", "\xff\xfe", "café", "日本 🎉",
		`{"notifier_id": "n", "topics": ["t"], "data": 1}`, strings.Repeat("x", MaxMessage), strings.Repeat("\xff", MaxBinaryMessage)} {
		f.Add([]byte(seed), false)
		f.Add([]byte(seed), true)
	}
	f.Fuzz(func(t *testing.T, msg []byte, ascii bool) {
		payload, ok := encodePayload(msg, ascii)
		text := asText(msg, ascii)
		if want := text && len(msg) <= MaxMessage || !text && len(msg) <= MaxBinaryMessage; ok != want {
			t.Fatalf("a message of %d bytes (text %v): ok %v", len(msg), text, ok)
		}
		if !ok {
			return
		}
		if len(payload) > maxPayload || strings.IndexByte(payload, 0) >= 0 || !utf8.ValidString(payload) {
			t.Fatalf("payload of %d bytes %q is no NOTIFY payload", len(payload), payload)
		}
		if ascii && strings.IndexFunc(payload, func(r rune) bool { return r >= utf8.RuneSelf }) >= 0 {
			t.Fatalf("payload %q is not ASCII", payload)
		}
		if text != (payload == string(msg)) {
			t.Fatalf("message %q (text %v) went as %q", msg, text, payload)
		}
		if got := decodePayload(payload); !bytes.Equal(got, msg) {
			t.Fatalf("message %q came back as %q", msg, got)
		}
	})
}

// FuzzChannelName: every channel name maps to a name that LISTEN and
// pg_notify take as it is (1 to 63 bytes of UTF-8 without NUL), valid
// names to themselves.
func FuzzChannelName(f *testing.F) {
	for _, seed := range []string{"", "EventNotifier", strings.Repeat("c", 63), strings.Repeat("c", 64), strings.Repeat("日", 40), "\xff", "a\x00b", `"; --`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got := ChannelName(name)
		if !validName(got) || strings.IndexByte(got, 0) >= 0 || !utf8.ValidString(got) || len(got) < 1 || len(got) > 63 {
			t.Fatalf("ChannelName(%q) = %q", name, got)
		}
		if validName(name) != (got == name) {
			t.Fatalf("ChannelName(%q) = %q", name, got)
		}
	})
}
