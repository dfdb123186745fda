package wsrpc

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
)

// TestRawText: RawText arguments and results over a real socket: plain,
// long, escaped and non-ASCII text arrives intact, many calls at once
// never see each other's text, and a RawText decoded by the caller is its
// own copy.
func TestRawText(t *testing.T) {
	m := echoMux() // the built-in echo takes and returns RawText
	type args struct {
		Text RawText `json:"text"`
		N    int     `json:"n,omitempty"`
	}
	type result struct {
		Text RawText `json:"text"`
		Len  int     `json:"len"`
	}
	Register(m, "upper", func(_ context.Context, a args) (RawText, error) {
		return RawText(strings.ToUpper(string(a.Text))), nil
	})
	Register(m, "wrap", func(_ context.Context, a args) (result, error) {
		return result{Text: a.Text, Len: len(a.Text)}, nil // encoded before the handler's frame is released
	})
	Register(m, "kept", func(_ context.Context, a args) (string, error) {
		return a.Text.String(), nil
	})
	_, url := testServer(t, m, nil)
	cl := testDial(t, url, nil)
	ctx := ctxT(t)

	long := strings.Repeat("0123456789abcdef", 2048)
	for _, text := range []string{"", "hello", long, "tab\there \"quoted\" back\\slash", "é ✓ \u2028 <&>", "\x01\x1f"} {
		got, err := Call[RawText](ctx, cl, "echo", args{Text: RawText(text)})
		if err != nil || string(got) != text {
			t.Errorf("echo %.40q: %.40q, %v", text, got, err)
		}
		up, err := Call[RawText](ctx, cl, "upper", args{Text: RawText(text)})
		if err != nil || string(up) != strings.ToUpper(text) {
			t.Errorf("upper %.40q: %.40q, %v", text, up, err)
		}
		w, err := Call[result](ctx, cl, "wrap", args{Text: RawText(text)})
		if err != nil || string(w.Text) != text || w.Len != len(text) {
			t.Errorf("wrap %.40q: %+.40v, %v", text, w, err)
		}
		k, err := Call[string](ctx, cl, "kept", args{Text: RawText(text)})
		if err != nil || k != text {
			t.Errorf("kept %.40q: %.40q, %v", text, k, err)
		}
	}

	// The caller's copy stays valid while other calls reuse the buffers.
	first, err := Call[RawText](ctx, cl, "echo", args{Text: RawText(long)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			text := strings.Repeat(string(rune('a'+i%26)), 1000+i*100)
			got, err := Call[RawText](ctx, cl, "echo", args{Text: RawText(text)})
			if err != nil || string(got) != text {
				t.Errorf("call %d: got %d bytes, %v", i, len(got), err)
			}
		})
	}
	wg.Wait()
	if string(first) != long {
		t.Error("a RawText result changed after later calls: it was not a copy")
	}

	// Wrong kinds are refused as for a string.
	_, err = Call[RawText](ctx, cl, "echo", map[string]any{"text": 5})
	if e, ok := errors.AsType[*Error](err); !ok || e.Code != CodeInvalidParams || e.Message != `argument "text": expected a string, got a number` {
		t.Errorf("number for RawText: %v", err)
	}
	b, err := json.Marshal(result{Text: RawText("a\"b")})
	if err != nil || string(b) != `{"text":"a\"b","len":0}` {
		t.Errorf("json.Marshal: %s, %v", b, err)
	}
}
