package promwsrpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsrpc/wsrpc"
)

// TestCauseOf: every cause a connection ends with maps to its documented
// label, wrapped as wsrpc wraps it; the values are the ones New starts at
// zero.
func TestCauseOf(t *testing.T) {
	timeout := &net.OpError{Op: "write", Net: "tcp", Err: os.ErrDeadlineExceeded}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, "normal"},
		{&websocket.CloseError{Code: websocket.CloseNormalClosure}, "normal"},
		{&websocket.CloseError{Code: websocket.CloseGoingAway, Text: "server shutting down"}, "normal"},
		{wsrpc.ErrClosed, "closed"},
		{fmt.Errorf("x: %w", wsrpc.ErrClosed), "closed"},
		{wsrpc.ErrKeepAliveTimeout, "keepalive_timeout"},
		{fmt.Errorf("write: %w", timeout), "write_timeout"},
		{websocket.ErrReadLimit, "message_too_big"},
		{&websocket.CloseError{Code: websocket.CloseAbnormalClosure, Text: io.ErrUnexpectedEOF.Error()}, "lost"},
		{io.EOF, "lost"},
		{&net.OpError{Op: "read", Err: net.ErrClosed}, "lost"},
		{fmt.Errorf("write: %w", &net.OpError{Op: "write", Err: os.NewSyscallError("write", syscall.EPIPE)}), "lost"},
		{&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, "lost"},
		{&websocket.CloseError{Code: websocket.CloseInternalServerErr}, "peer_status"},
		{&websocket.CloseError{Code: 4008, Text: "slow subscriber"}, "peer_status"},
		{errors.New("on connect failed"), "error"},
	} {
		got := causeOf(tc.err)
		if got != tc.want {
			t.Errorf("causeOf(%v) = %q, want %q", tc.err, got, tc.want)
		}
		found := false
		for _, c := range causes {
			found = found || c == got
		}
		if !found {
			t.Errorf("causeOf(%v) = %q, not in causes", tc.err, got)
		}
	}
}

// TestOutcomeOf: connect tries map to their documented outcomes.
func TestOutcomeOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{&wsrpc.HTTPError{StatusCode: 403}, "http_error"},
		{fmt.Errorf("x: %w", &wsrpc.HTTPError{StatusCode: 503}), "http_error"},
		{fmt.Errorf("%w after 10s", wsrpc.ErrHandshakeTimeout), "handshake_timeout"},
		{context.Canceled, "canceled"},
		{fmt.Errorf("%w (dial: refused)", context.DeadlineExceeded), "canceled"},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, "error"},
	} {
		if got := outcomeOf(tc.err); got != tc.want {
			t.Errorf("outcomeOf(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestReasonOf: refused calls map to their documented reasons.
func TestReasonOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&wsrpc.Error{Code: wsrpc.CodeMethodNotFound, Message: "method not found: x"}, "method_not_found"},
		{wsrpc.ErrTooManyCalls, "too_many_calls"},
		{wsrpc.ErrShuttingDown, "shutting_down"},
		{errors.New("something new"), "other"},
	} {
		if got := reasonOf(tc.err); got != tc.want {
			t.Errorf("reasonOf(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestCodeOf: the code label of each kind of failure, in both directions.
func TestCodeOf(t *testing.T) {
	m := New(nil)
	remote := func(c wsrpc.Code) error { return fmt.Errorf("call: %w", &wsrpc.Error{Code: c}) }
	for _, tc := range []struct {
		err  error
		code wsrpc.Code
		want string
	}{
		{remote(wsrpc.CodeParseError), wsrpc.CodeParseError, "ParseError"},
		{remote(wsrpc.CodeInvalidRequest), wsrpc.CodeInvalidRequest, "InvalidRequest"},
		{remote(wsrpc.CodeMethodNotFound), wsrpc.CodeMethodNotFound, "MethodNotFound"},
		{remote(wsrpc.CodeInvalidParams), wsrpc.CodeInvalidParams, "InvalidParams"},
		{remote(wsrpc.CodeInternalError), wsrpc.CodeInternalError, "InternalError"},
		{remote(wsrpc.CodeServerError), wsrpc.CodeServerError, "ServerError"},
		{remote(wsrpc.CodeCanceled), wsrpc.CodeCanceled, "Canceled"},
		{remote(42), 42, "42"},
		{remote(-32001), -32001, "-32001"},
		// An inbound call: the handler's plain error was sent as
		// InternalError, unless it was its context's.
		{errors.New("plain"), wsrpc.CodeInternalError, "InternalError"},
		{fmt.Errorf("query: %w", context.Canceled), wsrpc.CodeInternalError, "Canceled"},
		{context.DeadlineExceeded, wsrpc.CodeInternalError, "DeadlineExceeded"},
		{&wsrpc.Error{Code: wsrpc.CodeInternalError, Message: "chosen"}, wsrpc.CodeInternalError, "InternalError"},
		// An outbound call with no answer.
		{fmt.Errorf("call: %w", context.DeadlineExceeded), 0, "DeadlineExceeded"},
		{fmt.Errorf("call: %w", context.Canceled), 0, "Canceled"},
		{fmt.Errorf("call: %w: %w", wsrpc.ErrConnectionLost, wsrpc.ErrKeepAliveTimeout), 0, "ConnectionLost"},
		{wsrpc.ErrClosed, 0, "Closed"},
		{wsrpc.ErrNotConnected, 0, "NotConnected"},
		{errors.New("json: unsupported type"), 0, "LocalError"},
	} {
		if got := m.codeOf(&wsrpc.CallInfo{Err: tc.err, Code: tc.code}); got != tc.want {
			t.Errorf("codeOf(%v, %d) = %q, want %q", tc.err, tc.code, got, tc.want)
		}
	}
}

// TestLabelSet: the cap keeps the first values, maps later ones to
// "other" and invalid ones to "unknown"; a negative cap keeps all.
func TestLabelSet(t *testing.T) {
	l := labelSet{max: 2}
	for _, tc := range []struct{ in, want string }{
		{"a", "a"}, {"", "unknown"}, {"\xff", "unknown"}, {"b", "b"}, {"c", "other"}, {"a", "a"}, {"b", "b"}, {"d", "other"},
	} {
		if got := l.label(tc.in); got != tc.want {
			t.Errorf("label(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	all := labelSet{max: -1}
	for i := range 5000 {
		if v := fmt.Sprint(i); all.label(v) != v {
			t.Fatalf("no cap: label(%q) = %q", v, all.label(v))
		}
	}
}

// TestObserverAllocs: the Observer methods a successful call and its
// frames go through allocate nothing, once the method has been seen.
func TestObserverAllocs(t *testing.T) {
	m := New(nil)
	ctx := context.Background()
	for _, dir := range []wsrpc.Direction{wsrpc.Inbound, wsrpc.Outbound} {
		ci := &wsrpc.CallInfo{Method: "echo", Dir: dir, Duration: 50 * time.Microsecond}
		n := testing.AllocsPerRun(1000, func() {
			m.CallStarted(ctx, nil, ci)
			m.Queue(nil, 1, 60, 0)
			m.Queue(nil, -1, -60, 0)
			m.Frame(nil, wsrpc.Outbound, 60)
			m.Frame(nil, wsrpc.Inbound, 60)
			m.CallEnded(ctx, nil, ci)
		})
		if n != 0 {
			t.Errorf("%v call: %v allocations, want 0", dir, n)
		}
	}
}
