package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/hex"
	"net/http"
	"time"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/wsrpcjs"
)

// demoPage is the page wsrpc serve serves at /: the time topic's live
// updates, a form that calls a method, a button that makes the server call
// the page back (greet, which calls the page's whoami), and the
// connection's state. It loads /wsrpc.js.
//
//go:embed demo/index.html
var demoPage []byte

// demoPageETag is demoPage's ETag.
var demoPageETag = func() string {
	sum := sha256.Sum256(demoPage)
	return `"` + hex.EncodeToString(sum[:12]) + `"`
}()

// mountWeb adds the browser's routes to hm: the demo page at /, and the
// browser client at /wsrpc.js with its types at /wsrpc.d.ts.
func mountWeb(hm *http.ServeMux) {
	hm.HandleFunc("GET /{$}", serveDemoPage)
	hm.Handle("GET /wsrpc.js", wsrpcjs.Handler())
	hm.Handle("GET /wsrpc.d.ts", wsrpcjs.Handler())
}

func serveDemoPage(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("ETag", demoPageETag)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	// The page runs only its own inline script and /wsrpc.js, and talks
	// only to its own origin (connect-src 'self' includes ws: there).
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(demoPage))
}

// registerGreet adds greet() to mux: it calls whoami() on its caller,
// during the caller's own call, and returns "hello, " and the answer. The
// demo page exposes whoami, to show a nested call.
func registerGreet(mux *wsrpc.Mux) {
	wsrpc.Register(mux, "greet", func(ctx context.Context, _ struct{}) (string, error) {
		name, err := wsrpc.Call[string](ctx, wsrpc.ConnFromContext(ctx), "whoami", nil)
		if err != nil {
			return "", err
		}
		return "hello, " + name, nil
	})
}

// tokenOK reports whether the upgrade request r carries token: in the
// header X-Token (the CLI's clients, Python's), or as a browser sends it
// (wsrpc.RequestToken: a subprotocol, or the access_token query
// parameter; an Authorization: Bearer header too).
func tokenOK(r *http.Request, token string) bool {
	got := r.Header.Get("X-Token")
	if got == "" {
		got, _ = wsrpc.RequestToken(r)
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}
