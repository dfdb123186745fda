package wsrpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Code is a JSON-RPC error code: the "code" of an error response, encoded
// as a JSON number. JSON-RPC 2.0 reserves -32768 to -32000 for the codes
// below, for server errors (-32099 to -32000) and for codes to come; a
// handler's own codes ([Error]) lie outside that range.
type Code int

// JSON-RPC 2.0 error codes, used in error responses.
const (
	CodeParseError     Code = -32700 // the frame is not JSON
	CodeInvalidRequest Code = -32600 // the frame is JSON but not a valid envelope
	CodeMethodNotFound Code = -32601 // no such method, or a private one
	CodeInvalidParams  Code = -32602 // missing, unknown or mistyped arguments
	CodeInternalError  Code = -32603 // the handler failed or panicked
	// CodeServerError is sent when the callee cannot take the call now:
	// its server shuts down ([ErrShuttingDown]) or too many calls are
	// running ([ErrTooManyCalls]). Codes from -32000 to -32099 are
	// reserved for such conditions.
	CodeServerError Code = -32000
	// CodeCanceled is what [ErrorCode] says of a call whose caller gave up:
	// its context was canceled or passed its deadline. No answer carries
	// it: wsrpc sends none for a call its caller gave up on.
	CodeCanceled Code = -32800
)

// String names c: "parse error", "invalid request", "method not found",
// "invalid params", "internal error", "server error" or "canceled" for the
// codes above, and "code N" for any other.
func (c Code) String() string {
	if s := c.name(); s != "" {
		return s
	}
	return "code " + strconv.Itoa(int(c))
}

// name is String for the codes wsrpc names, and "" for others.
func (c Code) name() string {
	switch c {
	case CodeParseError:
		return "parse error"
	case CodeInvalidRequest:
		return "invalid request"
	case CodeMethodNotFound:
		return "method not found"
	case CodeInvalidParams:
		return "invalid params"
	case CodeInternalError:
		return "internal error"
	case CodeServerError:
		return "server error"
	case CodeCanceled:
		return "canceled"
	}
	return ""
}

// ErrorCode returns the code that classifies err, for callers and
// middleware that branch on codes or count them:
//
//   - 0 if err is nil;
//   - the Code of the first *[Error] in err's chain: the peer's answer,
//     or what a handler chose;
//   - [CodeServerError] for [ErrShuttingDown] and [ErrTooManyCalls] (as a
//     handler returning them sends them);
//   - [CodeCanceled] for [context.Canceled] and
//     [context.DeadlineExceeded]: the caller gave up before an answer came;
//   - [CodeInternalError] for any other error, as a handler's other errors
//     are sent. This includes this side's own failures, such as
//     [ErrConnectionLost] and [ErrClosed]: test for those with [errors.Is].
func ErrorCode(err error) Code {
	if err == nil {
		return 0
	}
	if e, ok := wireError(err); ok {
		return e.Code
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return CodeCanceled
	}
	return CodeInternalError
}

// Error is a call that failed on the remote side. It marshals to exactly the
// wire protocol's error object: {"code", "message", "data"}.
//
// A handler returns an *Error to choose the code its caller sees; any other
// error is sent as [CodeInternalError] with the message "internal error"
// (its text goes to the OnError hook; SendErrorDetails sends it too), except
// that [ErrShuttingDown] and [ErrTooManyCalls], wrapped or not, are sent as
// wsrpc sends those refusals. Callers get an *Error (wrapped; use
// [errors.As]) when the peer answered with an error; [errors.Is] matches it
// against those two sentinels (see [Error.Is]).
type Error struct {
	Code    Code            `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// Error returns "wsrpc: remote error CODE (NAME): MESSAGE", such as
// "wsrpc: remote error -32601 (method not found): method not found: nope",
// without " (NAME)" for a code wsrpc does not name (see [Code.String]).
func (e *Error) Error() string { return errPrefix + e.text() }

func (e *Error) text() string {
	s := "remote error " + strconv.Itoa(int(e.Code))
	if n := e.Code.name(); n != "" {
		s += " (" + n + ")"
	}
	return s + ": " + e.Message
}

// Is reports whether e is the peer's answer for the condition that target,
// a sentinel of this package, stands for, so that errors.Is(err,
// ErrShuttingDown) and errors.Is(err, ErrTooManyCalls) hold where the
// answer arrives. It compares the code ([CodeServerError]) and the message
// as wsrpc sends it ("server shutting down", "too many calls in flight"),
// also with the "wsrpc: " prefix that earlier versions sent. [ErrTooManyCalls]
// also matches the refusal of a call_me_back while too many of its
// callbacks wait ([RegisterUtilities]): the same condition, per connection.
// Any other target is false: compare codes with [ErrorCode] or [errors.As].
func (e *Error) Is(target error) bool {
	s, ok := target.(*sentinelError)
	if !ok || s.code == 0 || e.Code != s.code {
		return false
	}
	if e.Message == s.msg || e.Message == errPrefix+s.msg {
		return true
	}
	return s == ErrTooManyCalls && strings.HasPrefix(e.Message, msgTooManyCallbacks)
}

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// The messages of the remote sentinels, as sent on the wire.
const (
	msgShuttingDown = "server shutting down"
	msgTooManyCalls = "too many calls in flight"
	// msgTooManyCallbacks begins the message of call_me_back's refusal
	// (errTooManyCallbacks), which says the limit after it.
	msgTooManyCallbacks = "call_me_back: too many callbacks pending"
)

// Sentinel errors. Test for them with [errors.Is].
var (
	// ErrClosed is returned by calls on a connection or client that was
	// closed by this side (Close or Shutdown).
	ErrClosed error = &sentinelError{msg: "closed"}
	// ErrConnectionLost is returned by calls whose connection dropped while
	// they waited for the answer. Whether the peer ran the call is unknown.
	ErrConnectionLost error = &sentinelError{msg: "connection lost"}
	// ErrNotConnected is returned at once by a [Client]'s calls made while it
	// has no connection, unless [DialOptions].WaitForReady is set.
	ErrNotConnected error = &sentinelError{msg: "not connected"}
	// ErrHandshakeTimeout is a connect try that did not finish its TCP,
	// TLS and WebSocket handshakes within [DialOptions].HandshakeTimeout.
	ErrHandshakeTimeout error = &sentinelError{msg: "handshake timed out"}
	// ErrShuttingDown is the remote error (code CodeServerError, message
	// "server shutting down") a server sends for calls that arrive while
	// it shuts down. The caller's error matches it with [errors.Is]. A
	// handler may return it, wrapped or not, to send that answer.
	ErrShuttingDown error = &sentinelError{msg: msgShuttingDown, code: CodeServerError}
	// ErrTooManyCalls is the remote error (code CodeServerError, message
	// "too many calls in flight") a peer sends for a call that arrives
	// while MaxConcurrentCalls of the connection's calls are already
	// running, or whose request would take the running calls' requests
	// over MaxCallBytes. It also matches the refusal of a call_me_back
	// while 64 of its callbacks wait ([RegisterUtilities]). The caller's
	// error matches it with [errors.Is]: the peer is busy, and a later
	// call may succeed. A handler may return it, wrapped or not, to send
	// that answer.
	ErrTooManyCalls error = &sentinelError{msg: msgTooManyCalls, code: CodeServerError}
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

func (e *HTTPError) Error() string { return errPrefix + e.text() }

func (e *HTTPError) text() string {
	s := statusLine(e.StatusCode)
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

func (e *callError) Error() string { return errPrefix + e.text() }
func (e *callError) text() string {
	return "call " + strconv.Quote(e.method) + ": " + textOf(e.err)
}
func (e *callError) Unwrap() error { return e.err }

// wireError returns the error object that answers a handler's err when err
// chose one: the first *Error in err's chain, or the answer of a remote
// sentinel (ErrShuttingDown, ErrTooManyCalls) in it. ok is false for any
// other error.
func wireError(err error) (e *Error, ok bool) {
	if e, ok := errors.AsType[*Error](err); ok {
		return e, true
	}
	for _, s := range remoteSentinels {
		if errors.Is(err, s) {
			return &Error{Code: s.code, Message: s.msg}, true
		}
	}
	return nil, false
}

// remoteSentinels are the sentinels that stand for a peer's answer.
var remoteSentinels = []*sentinelError{
	ErrShuttingDown.(*sentinelError),
	ErrTooManyCalls.(*sentinelError),
}

// toWireError maps a handler's error to what is sent to the peer.
func toWireError(err error) *Error {
	if e, ok := wireError(err); ok {
		return e
	}
	return &Error{Code: CodeInternalError, Message: err.Error()}
}

// ErrKeepAliveTimeout is the cause of a connection that keep-alive found
// dead: nothing was received from the peer within the interval and timeout.
var ErrKeepAliveTimeout error = &sentinelError{msg: "keep-alive timeout"}

// ErrBadFrame is reported to the OnError hook, wrapped with the reason, for
// every frame from the peer that could not be used. The connection lives on.
var ErrBadFrame error = &sentinelError{msg: "bad frame from peer"}

// PanicError is reported to the OnError hook when a handler panics. The
// caller gets a [CodeInternalError] response and the connection lives on.
type PanicError struct {
	Method string
	Value  any    // what the handler panicked with
	Stack  []byte // the handler goroutine's stack
}

func (e *PanicError) Error() string { return errPrefix + e.text() }
func (e *PanicError) text() string {
	return fmt.Sprintf("handler for %q panicked: %v", e.Method, e.Value)
}

// notSentError marks a call that failed before its request was queued,
// because the connection had already ended: a Client may try it on the next
// connection.
type notSentError struct{ err error }

func (e *notSentError) Error() string { return e.err.Error() }
func (e *notSentError) text() string  { return textOf(e.err) }
func (e *notSentError) Unwrap() error { return e.err }

// Every error this package returns reads "wsrpc: ..." once. The outermost
// error adds errPrefix; the errors of this package that it wraps give it
// their text without the prefix (text), as fs.PathError and net.OpError
// write the errors they wrap: "wsrpc: call "echo": connection lost:
// keep-alive timeout".
const errPrefix = "wsrpc: "

// prefixedError is an error of this package: its Error is errPrefix +
// text().
type prefixedError interface {
	error
	text() string
}

// textOf returns err's text as an error that wraps it writes it: without
// the prefix if err is one of this package's errors. It looks at err
// itself, not its chain: the text of another package's error that wraps
// one of ours is that error's own.
func textOf(err error) string {
	if e, ok := err.(prefixedError); ok {
		return e.text()
	}
	return err.Error()
}

// sentinelError is a sentinel error of this package. A remote condition
// has the code its answer carries; code is 0 for local ones.
type sentinelError struct {
	msg  string
	code Code
}

func (e *sentinelError) Error() string { return errPrefix + e.msg }
func (e *sentinelError) text() string  { return e.msg }

// errorf is fmt.Errorf for this package's errors: the text is errPrefix and
// the formatted message, in which every error operand (%w or %v) is written
// with textOf, and %w wraps its operand as with fmt.Errorf.
func errorf(format string, args ...any) error {
	args = slices.Clone(args)
	for i, a := range args {
		if err, ok := a.(error); ok {
			args[i] = operand{err}
		}
	}
	f := fmt.Errorf(format, args...)
	e := &wrapError{msg: f.Error()}
	var wrapped []error
	switch u := f.(type) {
	case interface{ Unwrap() error }:
		wrapped = []error{u.Unwrap()}
	case interface{ Unwrap() []error }:
		wrapped = u.Unwrap()
	}
	for _, w := range wrapped {
		if o, ok := w.(operand); ok {
			e.errs = append(e.errs, o.err)
		}
	}
	return e
}

// operand is an error operand of errorf, which formats as textOf(err).
type operand struct{ err error }

func (o operand) Error() string { return textOf(o.err) }

// wrapError is an error made by errorf.
type wrapError struct {
	msg  string  // without errPrefix
	errs []error // the %w operands
}

func (e *wrapError) Error() string   { return errPrefix + e.msg }
func (e *wrapError) text() string    { return e.msg }
func (e *wrapError) Unwrap() []error { return e.errs }
