package wsrpc

import (
	"encoding/base64"
	"net/http"
	"strings"
)

// TokenProtocolPrefix begins the WebSocket subprotocol that carries a
// token: "wsrpc.token." followed by the token, base64url-encoded without
// padding (RFC 4648 §5), so that any token makes a valid subprotocol name.
// Browsers cannot set headers on a WebSocket, but they can offer
// subprotocols; wsrpc.js sends its token this way by default. The server
// never selects this subprotocol (it selects "wsrpc.v1"), so the token is
// not echoed back.
const TokenProtocolPrefix = "wsrpc.token."

// TokenQueryParam is the query parameter that carries a token in the
// upgrade request's URL (RFC 6750 §2.3 names it so), for clients that
// can set neither headers nor subprotocols; wsrpc.js sends it with
// tokenIn: "query". wsrpc never logs a request's query.
const TokenQueryParam = "access_token"

// RequestToken returns the bearer token of an upgrade request, for a
// server's Authenticate hook, and whether it has one. It looks, in order,
// at the header "Authorization: Bearer T" (Go and other clients that set
// headers), the subprotocol [TokenProtocolPrefix]+base64url(T) (wsrpc.js's
// default), and the query parameter [TokenQueryParam]. A subprotocol whose
// token is not valid base64url counts as none.
func RequestToken(r *http.Request) (string, bool) {
	if auth := r.Header.Get("Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
		return strings.TrimSpace(auth[7:]), true
	}
	for _, p := range websocketProtocols(r.Header) {
		if enc, ok := strings.CutPrefix(p, TokenProtocolPrefix); ok {
			if tok, err := base64.RawURLEncoding.DecodeString(enc); err == nil && len(tok) > 0 {
				return string(tok), true
			}
		}
	}
	if tok := r.URL.Query().Get(TokenQueryParam); tok != "" {
		return tok, true
	}
	return "", false
}

// websocketProtocols returns the subprotocols a client offered, from every
// Sec-WebSocket-Protocol header, trimmed.
func websocketProtocols(h http.Header) []string {
	var out []string
	for _, v := range h.Values("Sec-Websocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}
