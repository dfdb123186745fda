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
	"compress/gzip"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed wsrpc.js
var js []byte

//go:embed wsrpc.d.ts
var dts []byte

// A file is one served file, as it is and gzipped.
type file struct {
	body, gzipped     []byte
	contentType       string
	etag, gzippedETag string
}

var files = map[string]file{
	"wsrpc.js":   newFile(js, "text/javascript; charset=utf-8"),
	"wsrpc.d.ts": newFile(dts, "application/typescript; charset=utf-8"),
}

func newFile(body []byte, contentType string) file {
	sum := sha256.Sum256(body)
	tag := hex.EncodeToString(sum[:12])
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression) // the level is valid
	zw.Write(body)                                          // into memory: no error
	zw.Close()
	return file{body: body, gzipped: gz.Bytes(), contentType: contentType, etag: `"` + tag + `"`, gzippedETag: `"` + tag + `-gzip"`}
}

// Handler returns an http.Handler that serves wsrpc.js and wsrpc.d.ts,
// each named by the last element of the request's path, so it mounts on
// any path that ends in the file's name ("/wsrpc.js", "/static/wsrpc.js");
// other names are 404. It answers GET and HEAD with the file's content
// type, a strong ETag (a hash of the content), "Cache-Control: no-cache"
// (browsers keep the file but check it again each time, so a new version
// is seen at once, and an unchanged one costs a 304 Not Modified with no
// body) and "X-Content-Type-Options: nosniff". A client that accepts gzip
// gets the file gzipped (wsrpc.js: 8.6 kB instead of 29 kB), compressed
// once, with an ETag of its own.
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
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Vary", "Accept-Encoding")
	body, etag := f.body, f.etag
	if acceptsGzip(r.Header.Values("Accept-Encoding")) {
		body, etag = f.gzipped, f.gzippedETag
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("ETag", etag)
	// ServeContent answers If-None-Match (304), If-Match, ranges and HEAD.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// acceptsGzip reports whether Accept-Encoding header values accept gzip:
// they name gzip (or *) without q=0.
func acceptsGzip(values []string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			coding, params, _ := strings.Cut(part, ";")
			coding = strings.ToLower(strings.TrimSpace(coding))
			if coding != "gzip" && coding != "x-gzip" && coding != "*" {
				continue
			}
			q := strings.ReplaceAll(strings.ToLower(params), " ", "")
			if q == "q=0" || strings.HasPrefix(q, "q=0.0") && strings.Trim(q[4:], "0") == "" {
				return false
			}
			return true
		}
	}
	return false
}
