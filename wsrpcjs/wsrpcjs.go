// Package wsrpcjs serves wsrpc.js, wsrpc's browser client, and its
// TypeScript declarations, wsrpc.d.ts, from files embedded in the
// program, so that a page loads the client from the same origin as the
// wsrpc server, with no build step:
//
//	routes.Handle("GET /wsrpc.js", wsrpcjs.Handler())
//	routes.Handle("GET /wsrpc.d.ts", wsrpcjs.Handler())
//
//	<script type="module">
//	  import { connect } from "/wsrpc.js";
//	</script>
//
// Only a program that imports this package embeds the files (about 40
// kB); the wsrpc package alone does not. The same directory is the npm
// package of the client and holds its tests (test/, run by node --test).
package wsrpcjs

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"path"
	"time"
)

//go:embed wsrpc.js
var js []byte

//go:embed wsrpc.d.ts
var dts []byte

// A file is one served file.
type file struct {
	body        []byte
	contentType string
	etag        string
}

var files = map[string]file{
	"wsrpc.js":   newFile(js, "text/javascript; charset=utf-8"),
	"wsrpc.d.ts": newFile(dts, "application/typescript; charset=utf-8"),
}

func newFile(body []byte, contentType string) file {
	sum := sha256.Sum256(body)
	return file{body, contentType, `"` + hex.EncodeToString(sum[:12]) + `"`}
}

// Handler returns an http.Handler that serves wsrpc.js and wsrpc.d.ts,
// each named by the last element of the request's path, so it mounts on
// any path that ends in the file's name ("/wsrpc.js", "/static/wsrpc.js");
// other names are 404. It answers GET and HEAD with the file's content
// type, a strong ETag (a hash of the content), "Cache-Control: no-cache"
// (browsers keep the file but check it again each time, so a new version
// is seen at once, and an unchanged one costs a 304 Not Modified with no
// body) and "X-Content-Type-Options: nosniff".
func Handler() http.Handler {
	return http.HandlerFunc(serve)
}

func serve(w http.ResponseWriter, r *http.Request) {
	f, ok := files[path.Base(r.URL.Path)]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("ETag", f.etag)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	// ServeContent answers If-None-Match (304), If-Match, ranges and HEAD.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}
