package wsrpc

import (
	"crypto/tls"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// upgrade is what a server's connection keeps of the request that opened
// it: a compact record, since an idle connection keeps it for its whole
// life. Conn.Request builds an *http.Request from it when first asked.
type upgrade struct {
	method, host, remoteAddr, pattern string
	url                               string // r.URL, as a string: smaller than a *url.URL; parsed by request
	tls                               *tls.ConnectionState
	header                            []string // name, value, ...: without the handshake's own fields
	pathValues                        []string // name, value, ...

	once sync.Once
	req  *http.Request
}

// detach records r, but not its body, context or connection, which would
// pin net/http's buffers for the connection's life.
func detach(r *http.Request) *upgrade {
	u := &upgrade{method: r.Method, host: r.Host, remoteAddr: r.RemoteAddr, pattern: r.Pattern, url: r.URL.String(), tls: r.TLS}
	for k, vs := range r.Header {
		switch k {
		case "Connection", "Upgrade", "Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Extensions":
			continue
		}
		for _, v := range vs {
			u.header = append(u.header, k, v)
		}
	}
	for _, name := range wildcards(r.Pattern) {
		if v := r.PathValue(name); v != "" {
			u.pathValues = append(u.pathValues, name, v)
		}
	}
	return u
}

// pathValue returns the value of the named path wildcard, or "".
func (u *upgrade) pathValue(name string) string {
	for i := 0; i+1 < len(u.pathValues); i += 2 {
		if u.pathValues[i] == name {
			return u.pathValues[i+1]
		}
	}
	return ""
}

// request returns the request, made once.
func (u *upgrade) request() *http.Request {
	u.once.Do(func() {
		r := &http.Request{
			Method:     u.method,
			URL:        parseURL(u.url),
			Proto:      "HTTP/1.1",
			ProtoMajor: 1,
			ProtoMinor: 1,
			Header:     make(http.Header, len(u.header)/2),
			Host:       u.host,
			RemoteAddr: u.remoteAddr,
			TLS:        u.tls,
			Pattern:    u.pattern,
			Body:       http.NoBody,
		}
		r.RequestURI = r.URL.RequestURI()
		for i := 0; i+1 < len(u.header); i += 2 {
			r.Header[u.header[i]] = append(r.Header[u.header[i]], u.header[i+1])
		}
		for i := 0; i+1 < len(u.pathValues); i += 2 {
			r.SetPathValue(u.pathValues[i], u.pathValues[i+1])
		}
		u.req = r
	})
	return u.req
}

// wildcards returns the names of the {wildcards} in a ServeMux pattern.
func wildcards(pattern string) []string {
	var names []string
	for {
		i := strings.IndexByte(pattern, '{')
		if i < 0 {
			return names
		}
		pattern = pattern[i+1:]
		j := strings.IndexByte(pattern, '}')
		if j < 0 {
			return names
		}
		name := strings.TrimSuffix(pattern[:j], "...")
		if name != "$" && name != "" {
			names = append(names, name)
		}
		pattern = pattern[j+1:]
	}
}

// parseURL parses what detach kept of a request's URL.
func parseURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil { // it was a URL: not expected
		return &url.URL{Path: s}
	}
	return u
}
