package wsrpcjs_test

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/wsrpcjs"
)

// A server that serves the browser client beside its WebSocket endpoint,
// and takes a browser's token in Authenticate.
func Example() {
	const secret = "s3cret" // in a real server: look the token up
	mux := wsrpc.NewMux()
	srv, err := wsrpc.NewServer(mux, &wsrpc.ServerOptions{
		Authenticate: func(r *http.Request) (any, error) {
			// wsrpc.js sends its token option as a subprotocol (or, with
			// tokenIn: "query", as ?access_token=); Go clients as a header.
			tok, ok := wsrpc.RequestToken(r)
			if !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(secret)) != 1 {
				return nil, &wsrpc.HTTPError{StatusCode: http.StatusUnauthorized}
			}
			return tok, nil
		},
	})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	routes := http.NewServeMux()
	routes.Handle("/ws", srv)
	routes.Handle("GET /wsrpc.js", wsrpcjs.Handler())
	routes.Handle("GET /wsrpc.d.ts", wsrpcjs.Handler())

	hs := httptest.NewServer(routes)
	defer hs.Close()
	resp, err := hs.Client().Get(hs.URL + "/wsrpc.js")
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status, resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"))
	// Output: 200 OK text/javascript; charset=utf-8 no-cache
}
