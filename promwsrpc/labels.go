package promwsrpc

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/wsrpc/wsrpc"
)

// The label values that stand for many.
const (
	labelUnknown = "unknown" // a method no handler serves
	labelOther   = "other"   // a method or code over its cap
)

// labelSet bounds the values of a label: the first max distinct values
// are kept, later ones become "other". A value once kept stays, so the
// series of a call's start and of its end are the same. A kept value is
// found without a lock.
type labelSet struct {
	max  int      // < 0: no cap
	seen sync.Map // string → struct{}: the values kept
	full atomic.Bool

	mu sync.Mutex // Guards n, and the admission of a value into seen.
	n  int
}

// label returns the label value for v: v itself, "unknown" for an empty
// or invalid UTF-8 v (no valid label value), or "other" once max values
// are kept.
func (l *labelSet) label(v string) string {
	if _, ok := l.seen.Load(v); ok {
		return v
	}
	if v == "" || !utf8.ValidString(v) {
		return labelUnknown
	}
	if l.full.Load() {
		return labelOther
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.seen.Load(v); ok {
		return v
	}
	if l.max >= 0 && l.n >= l.max {
		l.full.Store(true)
		return labelOther
	}
	l.seen.Store(v, struct{}{})
	l.n++
	return v
}

// codeName returns the code label of one of wsrpc's codes, and "" for
// any other.
func codeName(c wsrpc.Code) string {
	switch c {
	case wsrpc.CodeParseError:
		return "ParseError"
	case wsrpc.CodeInvalidRequest:
		return "InvalidRequest"
	case wsrpc.CodeMethodNotFound:
		return "MethodNotFound"
	case wsrpc.CodeInvalidParams:
		return "InvalidParams"
	case wsrpc.CodeInternalError:
		return "InternalError"
	case wsrpc.CodeServerError:
		return "ServerError"
	case wsrpc.CodeCanceled:
		return "Canceled"
	}
	return ""
}

// failureOf returns the code label of a call that failed without an
// error answer.
func failureOf(err error) string {
	switch {
	case errors.Is(err, wsrpc.ErrConnectionLost):
		return "ConnectionLost"
	case errors.Is(err, wsrpc.ErrClosed):
		return "Closed"
	case errors.Is(err, wsrpc.ErrNotConnected):
		return "NotConnected"
	case errors.Is(err, context.DeadlineExceeded):
		return "DeadlineExceeded"
	case errors.Is(err, context.Canceled):
		return "Canceled"
	}
	if e, ok := errors.AsType[*wsrpc.Error](err); ok {
		// An answer that the core did not give a code (it always does).
		if s := codeName(e.Code); s != "" {
			return s
		}
	}
	return "LocalError"
}

// causes are the values of the cause label, in the order causeOf tests
// them.
var causes = []string{"normal", "closed", "keepalive_timeout", "write_timeout", "message_too_big", "lost", "peer_status", "error"}

// causeOf returns the cause label of a connection that ended with err.
func causeOf(err error) string {
	if err == nil {
		return "normal"
	}
	if errors.Is(err, wsrpc.ErrClosed) {
		return "closed"
	}
	if errors.Is(err, wsrpc.ErrKeepAliveTimeout) {
		return "keepalive_timeout"
	}
	if ce, ok := errors.AsType[*websocket.CloseError](err); ok {
		switch ce.Code {
		case websocket.CloseNormalClosure, websocket.CloseGoingAway:
			return "normal"
		case websocket.CloseAbnormalClosure: // no close frame: gorilla's end of stream
			return "lost"
		}
		return "peer_status"
	}
	if errors.Is(err, websocket.ErrReadLimit) {
		return "message_too_big"
	}
	// Only writes have deadlines on a connection that is up.
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return "write_timeout"
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) {
		return "lost"
	}
	return "error"
}

// outcomes are the values of the outcome label.
var outcomes = []string{"ok", "http_error", "handshake_timeout", "canceled", "error"}

// outcomeOf returns the outcome label of a connect try that ended with
// err.
func outcomeOf(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, wsrpc.ErrHandshakeTimeout):
		return "handshake_timeout"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.Is(err, wsrpc.ErrClosed):
		return "canceled"
	}
	if _, ok := errors.AsType[*wsrpc.HTTPError](err); ok {
		return "http_error"
	}
	return "error"
}

// reasonOf returns the reason label of a refused call.
func reasonOf(err error) string {
	if e, ok := errors.AsType[*wsrpc.Error](err); ok && e.Code == wsrpc.CodeMethodNotFound {
		return "method_not_found"
	}
	switch {
	case errors.Is(err, wsrpc.ErrTooManyCalls):
		return "too_many_calls"
	case errors.Is(err, wsrpc.ErrShuttingDown):
		return "shutting_down"
	}
	return "other"
}
