package wsrpcjs

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// get requests path from a server that mounts Handler as the README says,
// with the given header, and returns the response and its body.
func get(t *testing.T, method, path string, header http.Header) (*http.Response, string) {
	t.Helper()
	routes := http.NewServeMux()
	routes.Handle("/wsrpc.js", Handler())
	routes.Handle("/wsrpc.d.ts", Handler())
	routes.Handle("/static/", Handler())
	hs := httptest.NewServer(routes)
	defer hs.Close()
	req, err := http.NewRequest(method, hs.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	hs.Client().CloseIdleConnections()
	return resp, string(body)
}

func TestHandlerServesFiles(t *testing.T) {
	tests := []struct{ path, file, contentType string }{
		{"/wsrpc.js", "wsrpc.js", "text/javascript; charset=utf-8"},
		{"/wsrpc.d.ts", "wsrpc.d.ts", "application/typescript; charset=utf-8"},
		{"/static/wsrpc.js", "wsrpc.js", "text/javascript; charset=utf-8"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			want, err := os.ReadFile(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			resp, body := get(t, http.MethodGet, tt.path, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", resp.StatusCode)
			}
			if body != string(want) {
				t.Errorf("body is not %s as on disk (%d bytes, want %d)", tt.file, len(body), len(want))
			}
			for k, v := range map[string]string{
				"Content-Type":           tt.contentType,
				"Cache-Control":          "no-cache",
				"X-Content-Type-Options": "nosniff",
			} {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			if etag := resp.Header.Get("ETag"); len(etag) < 10 || etag[0] != '"' {
				t.Errorf("ETag %q, want a strong ETag", etag)
			}
		})
	}
}

func TestHandlerETag(t *testing.T) {
	resp, _ := get(t, http.MethodGet, "/wsrpc.js", nil)
	etag := resp.Header.Get("ETag")
	dts, _ := get(t, http.MethodGet, "/wsrpc.d.ts", nil)
	if dts.Header.Get("ETag") == etag {
		t.Errorf("wsrpc.js and wsrpc.d.ts share the ETag %s", etag)
	}

	// The browser's revalidation of its cached copy: 304, no body.
	for _, inm := range []string{etag, `"other", ` + etag, "W/" + etag, "*"} {
		resp, body := get(t, http.MethodGet, "/wsrpc.js", http.Header{"If-None-Match": {inm}})
		if resp.StatusCode != http.StatusNotModified || body != "" {
			t.Errorf("If-None-Match %s: status %d with %d bytes, want 304 with none", inm, resp.StatusCode, len(body))
		}
		if got := resp.Header.Get("ETag"); got != etag {
			t.Errorf("If-None-Match %s: 304 with ETag %q, want %q", inm, got, etag)
		}
	}
	// A copy of another version: the whole file.
	resp, body := get(t, http.MethodGet, "/wsrpc.js", http.Header{"If-None-Match": {`"0123456789abcdef"`}})
	if resp.StatusCode != http.StatusOK || body == "" {
		t.Errorf("stale If-None-Match: status %d with %d bytes, want 200 with the file", resp.StatusCode, len(body))
	}
}

func TestHandlerRefuses(t *testing.T) {
	resp, body := get(t, http.MethodHead, "/wsrpc.js", nil)
	if resp.StatusCode != http.StatusOK || body != "" || resp.Header.Get("ETag") == "" {
		t.Errorf("HEAD: status %d, %d bytes, ETag %q; want 200, no body, an ETag", resp.StatusCode, len(body), resp.Header.Get("ETag"))
	}
	if resp, _ := get(t, http.MethodPost, "/wsrpc.js", nil); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: status %d, Allow %q; want 405, GET, HEAD", resp.StatusCode, resp.Header.Get("Allow"))
	}
	for _, p := range []string{"/static/other.js", "/static/wsrpcjs.go", "/static/"} {
		if resp, _ := get(t, http.MethodGet, p, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", p, resp.StatusCode)
		}
	}
}

func TestHandlerGzip(t *testing.T) {
	want, err := os.ReadFile("wsrpc.js")
	if err != nil {
		t.Fatal(err)
	}
	// An explicit Accept-Encoding: the transport then leaves the body
	// and its Content-Encoding as they came.
	plain, body := get(t, http.MethodGet, "/wsrpc.js", http.Header{"Accept-Encoding": {"identity"}})
	if plain.Header.Get("Content-Encoding") != "" || body != string(want) {
		t.Errorf("identity: Content-Encoding %q and %d bytes, want none and the file", plain.Header.Get("Content-Encoding"), len(body))
	}
	gz, zbody := get(t, http.MethodGet, "/wsrpc.js", http.Header{"Accept-Encoding": {"br, gzip;q=0.8"}})
	if gz.Header.Get("Content-Encoding") != "gzip" || gz.Header.Get("Vary") != "Accept-Encoding" {
		t.Fatalf("gzip: Content-Encoding %q, Vary %q; want gzip, Accept-Encoding", gz.Header.Get("Content-Encoding"), gz.Header.Get("Vary"))
	}
	zr, err := gzip.NewReader(bytes.NewReader([]byte(zbody)))
	if err != nil {
		t.Fatal(err)
	}
	unzipped, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(unzipped, want) {
		t.Errorf("gzip: the body does not unzip to wsrpc.js (err %v)", err)
	}
	if len(zbody) >= len(want)/2 {
		t.Errorf("gzip: %d bytes for %d", len(zbody), len(want))
	}
	if gz.Header.Get("ETag") == plain.Header.Get("ETag") {
		t.Errorf("gzipped and plain share the ETag %s", gz.Header.Get("ETag"))
	}
	// Each representation's ETag revalidates that representation.
	resp, _ := get(t, http.MethodGet, "/wsrpc.js", http.Header{"Accept-Encoding": {"gzip"}, "If-None-Match": {gz.Header.Get("ETag")}})
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("gzip revalidation: status %d, want 304", resp.StatusCode)
	}
	resp, _ = get(t, http.MethodGet, "/wsrpc.js", http.Header{"Accept-Encoding": {"gzip"}, "If-None-Match": {plain.Header.Get("ETag")}})
	if resp.StatusCode != http.StatusOK {
		t.Errorf("gzip request with the plain ETag: status %d, want 200", resp.StatusCode)
	}
}

func TestAcceptsGzip(t *testing.T) {
	for _, tt := range []struct {
		values []string
		want   bool
	}{
		{nil, false},
		{[]string{"identity"}, false},
		{[]string{"gzip"}, true},
		{[]string{"deflate, GZIP"}, true},
		{[]string{"br", "gzip;q=0.5"}, true},
		{[]string{"gzip;q=0"}, false},
		{[]string{"gzip; q=0.000"}, false},
		{[]string{"gzip;q=0.05"}, true},
		{[]string{"*"}, true},
		{[]string{"x-gzip"}, true},
	} {
		if got := acceptsGzip(tt.values); got != tt.want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", tt.values, got, tt.want)
		}
	}
}
