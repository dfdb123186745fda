package wsrpc

import (
	"bytes"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"
)

func TestRequestToken(t *testing.T) {
	tok := "tok+en/é=" // not a valid subprotocol name as it is
	proto := TokenProtocolPrefix + base64.RawURLEncoding.EncodeToString([]byte(tok))
	tests := []struct {
		name   string
		url    string
		header http.Header
		want   string
		ok     bool
	}{
		{"none", "/ws", nil, "", false},
		{"bearer header", "/ws", http.Header{"Authorization": {"Bearer " + tok}}, tok, true},
		{"bearer, any case", "/ws", http.Header{"Authorization": {"bearer " + tok}}, tok, true},
		{"basic is no bearer", "/ws", http.Header{"Authorization": {"Basic abc"}}, "", false},
		{"subprotocol", "/ws", http.Header{"Sec-Websocket-Protocol": {"wsrpc.v1, " + proto}}, tok, true},
		{"subprotocol, own header line", "/ws", http.Header{"Sec-Websocket-Protocol": {"wsrpc.v1", proto}}, tok, true},
		{"subprotocol not base64url", "/ws", http.Header{"Sec-Websocket-Protocol": {TokenProtocolPrefix + "a+b"}}, "", false},
		{"query", "/ws?access_token=" + strings.ReplaceAll(base64.URLEncoding.EncodeToString([]byte(tok)), "=", "%3D"), nil, base64.URLEncoding.EncodeToString([]byte(tok)), true},
		{"header first", "/ws?access_token=q", http.Header{"Authorization": {"Bearer h"}, "Sec-Websocket-Protocol": {proto}}, "h", true},
		{"subprotocol before query", "/ws?access_token=q", http.Header{"Sec-Websocket-Protocol": {proto}}, tok, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tt.url, nil)
			for k, vs := range tt.header {
				r.Header[k] = vs
			}
			got, ok := RequestToken(r)
			if got != tt.want || ok != tt.ok {
				t.Errorf("RequestToken = %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestTokenKeptOutOfLogs connects with a token in the subprotocol and in
// the query, as wsrpc.js does, and with a wrong one: Authenticate sees
// each token, the server still selects wsrpc.v1, and the server's Debug
// log (everything it logs) holds neither the tokens nor the query.
func TestTokenKeptOutOfLogs(t *testing.T) {
	const good, bad = "good-secret-4f2a", "bad-secret-9c1e"
	var logs lockedLog
	var mu sync.Mutex
	var seen []string
	_, url := testServer(t, utilMux(), &ServerOptions{
		ConnOptions: ConnOptions{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))},
		Authenticate: func(r *http.Request) (any, error) {
			tok, _ := RequestToken(r)
			mu.Lock()
			seen = append(seen, tok)
			mu.Unlock()
			if tok != good {
				return nil, &HTTPError{StatusCode: http.StatusUnauthorized}
			}
			return tok, nil
		},
	})
	dial := func(url string, protocols ...string) (*http.Response, error) {
		d := websocket.Dialer{Subprotocols: protocols}
		ws, resp, err := d.Dial(url, nil)
		if err == nil {
			if got := ws.Subprotocol(); got != extProtocol {
				t.Errorf("subprotocol %q selected, want %q", got, extProtocol)
			}
			ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), deadlineSoon())
			ws.ReadMessage() // the server's close frame
			ws.Close()
		}
		return resp, err
	}
	enc := func(s string) string { return TokenProtocolPrefix + base64.RawURLEncoding.EncodeToString([]byte(s)) }
	if _, err := dial(url, extProtocol, enc(good)); err != nil {
		t.Fatalf("subprotocol token: %v", err)
	}
	if _, err := dial(url+"?"+TokenQueryParam+"="+good, extProtocol); err != nil {
		t.Fatalf("query token: %v", err)
	}
	for _, d := range []func() (*http.Response, error){
		func() (*http.Response, error) { return dial(url, extProtocol, enc(bad)) },
		func() (*http.Response, error) { return dial(url + "?" + TokenQueryParam + "=" + bad) },
	} {
		resp, err := d()
		if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong token: err %v, want a 401", err)
		}
		resp.Body.Close()
	}
	mu.Lock()
	got := strings.Join(seen, " ")
	mu.Unlock()
	if want := strings.Join([]string{good, good, bad, bad}, " "); got != want {
		t.Errorf("Authenticate saw tokens %q, want %q", got, want)
	}
	// Both accepted connections have ended and logged it.
	waitFor(t, func() bool { return strings.Count(logs.String(), "msg=disconnected") == 2 })
	out := logs.String()
	for _, secret := range []string{good, bad, TokenQueryParam, base64.RawURLEncoding.EncodeToString([]byte(good))} {
		if strings.Contains(out, secret) {
			t.Errorf("the server's log holds %q:\n%s", secret, out)
		}
	}
}

// lockedLog is a log sink safe for concurrent use.
type lockedLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
