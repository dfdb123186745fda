package wsrpc

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// JSON-RPC 2.0 error codes, used in error responses.
const (
	CodeParseError     = -32700 // the frame is not JSON
	CodeInvalidRequest = -32600 // the frame is JSON but not a valid envelope
	CodeMethodNotFound = -32601 // no such method, or a private one
	CodeInvalidParams  = -32602 // missing, unknown or mistyped arguments
	CodeInternalError  = -32603 // the handler failed or panicked
	// CodeServerError is sent when the callee cannot take the call now, for
	// example while its server shuts down. Codes from -32000 to -32099 are
	// reserved for such conditions.
	CodeServerError = -32000
	// CodeCanceled is sent, over the negotiated extension only, when a
	// handler gave up because its caller canceled.
	CodeCanceled = -32800
)

// Error is a call that failed on the remote side. It marshals to exactly the
// wire protocol's error object: {"code", "message", "data"}.
//
// A handler returns an *Error to choose the code its caller sees; any other
// error is sent as [CodeInternalError] with the message "internal error"
// (its text goes to the OnError hook; SendErrorDetails sends it too). Callers get an
// *Error (wrapped; use [errors.As]) when the peer answered with an error.
type Error struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *Error) Error() string {
	return "wsrpc: remote error " + strconv.Itoa(e.Code) + ": " + e.Message
}

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Sentinel errors. Test for them with [errors.Is].
var (
	// ErrClosed is returned by calls on a connection or client that was
	// closed by this side (Close or Shutdown).
	ErrClosed = errors.New("wsrpc: closed")
	// ErrConnectionLost is returned by calls whose connection dropped while
	// they waited for the answer. Whether the peer ran the call is unknown.
	ErrConnectionLost = errors.New("wsrpc: connection lost")
	// ErrNotConnected is returned at once by a [Client]'s calls made while it
	// has no connection, unless [DialOptions].WaitForReady is set.
	ErrNotConnected = errors.New("wsrpc: not connected")
	// ErrHandshakeTimeout is a connect try that did not finish its TCP,
	// TLS and WebSocket handshakes within [DialOptions].HandshakeTimeout.
	ErrHandshakeTimeout = errors.New("wsrpc: handshake timed out")
	// ErrShuttingDown is the remote error a server sends for calls that
	// arrive while it shuts down.
	ErrShuttingDown = errors.New("wsrpc: server shutting down")
	// ErrTooManyCalls is the remote error (code CodeServerError) a peer
	// sends for a call that arrives while MaxConcurrentCalls of the
	// connection's calls are already running, or whose request would take
	// the running calls' requests over MaxCallBytes.
	ErrTooManyCalls = errors.New("wsrpc: too many calls in flight")
)

// HTTPError is an HTTP status at the WebSocket upgrade. A server's
// Authenticate hook returns one to refuse with that status, and [Dial]
// returns one (wrapped) when the server answered the upgrade with anything
// but a valid 101 Switching Protocols. Which statuses a client retries is
// described at [Dial].
type HTTPError struct {
	StatusCode int
	// Message is the reason to send, on a server. On a client it is the
	// response body when that is a short line of plain text (as
	// http.Error writes) and the status an error status, and empty
	// otherwise: an HTML page, or a long or multi-line body, is dropped.
	Message string
}

func (e *HTTPError) Error() string {
	s := "wsrpc: " + statusLine(e.StatusCode)
	if e.Message != "" && e.Message != http.StatusText(e.StatusCode) {
		s += ": " + e.Message
	}
	return s
}

// statusLine names an HTTP status: "HTTP 404 Not Found".
func statusLine(code int) string {
	s := "HTTP " + strconv.Itoa(code)
	if t := http.StatusText(code); t != "" {
		s += " " + t
	}
	return s
}

// callError wraps an error from a call with the method's name.
type callError struct {
	method string
	err    error
}

func (e *callError) Error() string {
	return "wsrpc: call " + strconv.Quote(e.method) + ": " + strings.TrimPrefix(e.err.Error(), "wsrpc: ")
}
func (e *callError) Unwrap() error { return e.err }

// toWireError maps a handler's error to what is sent to the peer.
func toWireError(err error) *Error {
	if e, ok := errors.AsType[*Error](err); ok {
		return e
	}
	return &Error{Code: CodeInternalError, Message: err.Error()}
}

// ErrKeepAliveTimeout is the cause of a connection that keep-alive found
// dead: nothing was received from the peer within the interval and timeout.
var ErrKeepAliveTimeout = errors.New("wsrpc: keep-alive timeout")

// ErrBadFrame is reported to the OnError hook, wrapped with the reason, for
// every frame from the peer that could not be used. The connection lives on.
var ErrBadFrame = errors.New("wsrpc: bad frame from peer")

// PanicError is reported to the OnError hook when a handler panics. The
// caller gets a [CodeInternalError] response and the connection lives on.
type PanicError struct {
	Method string
	Value  any    // what the handler panicked with
	Stack  []byte // the handler goroutine's stack
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("wsrpc: handler for %q panicked: %v", e.Method, e.Value)
}

// notSentError marks a call that failed before its request was queued,
// because the connection had already ended: a Client may try it on the next
// connection.
type notSentError struct{ err error }

func (e *notSentError) Error() string { return e.err.Error() }

func (e *notSentError) Unwrap() error { return e.err }
