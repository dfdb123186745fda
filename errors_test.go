package wsrpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
)

// TestCodeString: the codes wsrpc names have names; others say their
// number.
func TestCodeString(t *testing.T) {
	for _, tt := range []struct {
		code Code
		want string
	}{
		{CodeParseError, "parse error"},
		{CodeInvalidRequest, "invalid request"},
		{CodeMethodNotFound, "method not found"},
		{CodeInvalidParams, "invalid params"},
		{CodeInternalError, "internal error"},
		{CodeServerError, "server error"},
		{CodeCanceled, "canceled"},
		{-32099, "code -32099"},
		{1001, "code 1001"},
		{0, "code 0"},
	} {
		if got := tt.code.String(); got != tt.want {
			t.Errorf("Code(%d).String() = %q, want %q", int(tt.code), got, tt.want)
		}
	}
}

// TestCodeJSON: a Code encodes as a JSON number, and an *Error as the wire
// protocol's error object.
func TestCodeJSON(t *testing.T) {
	b, err := json.Marshal(&Error{Code: CodeServerError, Message: msgTooManyCalls})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"code":-32000,"message":"too many calls in flight"}`; string(b) != want {
		t.Errorf("Marshal = %s, want %s", b, want)
	}
	var e Error
	if err := json.Unmarshal([]byte(`{"code": -32601, "message": "m"}`), &e); err != nil || e.Code != CodeMethodNotFound {
		t.Errorf("Unmarshal: %+v, %v; want code %d", e, err, CodeMethodNotFound)
	}
}

// TestErrorCode: ErrorCode finds an *Error's code in the chain, gives the
// remote sentinels their code, context errors CodeCanceled, other errors
// CodeInternalError and nil 0.
func TestErrorCode(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want Code
	}{
		{"nil", nil, 0},
		{"*Error", &Error{Code: 1001, Message: "division by zero"}, 1001},
		{"a call's remote error", &callError{"m", &Error{Code: CodeMethodNotFound}}, CodeMethodNotFound},
		{"ErrShuttingDown", ErrShuttingDown, CodeServerError},
		{"wrapped ErrTooManyCalls", fmt.Errorf("queue: %w", ErrTooManyCalls), CodeServerError},
		{"ErrTooManyCalls after a local sentinel", errors.Join(ErrClosed, ErrTooManyCalls), CodeServerError},
		{"context.Canceled", context.Canceled, CodeCanceled},
		{"a call's deadline", &callError{"m", context.DeadlineExceeded}, CodeCanceled},
		{"not connected before the deadline", &callError{"m", errorf("%w: %w", ErrNotConnected, context.DeadlineExceeded)}, CodeCanceled},
		{"an *Error beside a context error", errorf("%w (%w)", context.DeadlineExceeded, &Error{Code: 7}), 7},
		{"ErrConnectionLost", &callError{"m", ErrConnectionLost}, CodeInternalError},
		{"ErrClosed", ErrClosed, CodeInternalError},
		{"a plain error", errors.New("disk full"), CodeInternalError},
	} {
		if got := ErrorCode(tt.err); got != tt.want {
			t.Errorf("%s: ErrorCode(%v) = %d, want %d", tt.name, tt.err, got, tt.want)
		}
	}
}

// TestErrorIs: an *Error matches the remote sentinels by code and message,
// wherever it is in the chain, and nothing else.
func TestErrorIs(t *testing.T) {
	serverError := func(msg string) *Error { return &Error{Code: CodeServerError, Message: msg} }
	for _, tt := range []struct {
		name           string
		err            error
		shutting, busy bool // errors.Is ErrShuttingDown, ErrTooManyCalls
	}{
		{"shutting down", serverError("server shutting down"), true, false},
		{"shutting down, as earlier versions sent it", serverError("wsrpc: server shutting down"), true, false},
		{"shutting down, in a call's error", &callError{"m", serverError("server shutting down")}, true, false},
		{"too many calls", serverError("too many calls in flight"), false, true},
		{"too many calls, as earlier versions sent it", serverError("wsrpc: too many calls in flight"), false, true},
		{"too many callbacks", &callError{"call_me_back", errTooManyCallbacks}, false, true},
		{"another code", &Error{Code: CodeInternalError, Message: "server shutting down"}, false, false},
		{"another message", serverError("server shutting down soon"), false, false},
		{"a handler's own server error", serverError("too many pending wake-up calls"), false, false},
		{"ErrShuttingDown itself", ErrShuttingDown, true, false},
		{"ErrTooManyCalls wrapped", fmt.Errorf("queue: %w", ErrTooManyCalls), false, true},
	} {
		if got := errors.Is(tt.err, ErrShuttingDown); got != tt.shutting {
			t.Errorf("%s: errors.Is(%v, ErrShuttingDown) = %t, want %t", tt.name, tt.err, got, tt.shutting)
		}
		if got := errors.Is(tt.err, ErrTooManyCalls); got != tt.busy {
			t.Errorf("%s: errors.Is(%v, ErrTooManyCalls) = %t, want %t", tt.name, tt.err, got, tt.busy)
		}
		if errors.Is(tt.err, ErrClosed) || errors.Is(tt.err, ErrConnectionLost) {
			t.Errorf("%s: %v matches a local sentinel", tt.name, tt.err)
		}
	}
}

// TestErrorText: an error says "wsrpc: " once, however its errors nest;
// the text of another package's error is left as it is.
func TestErrorText(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{&Error{Code: CodeServerError, Message: msgTooManyCalls},
			"wsrpc: remote error -32000 (server error): too many calls in flight"},
		{&Error{Code: 1001, Message: "division by zero"},
			"wsrpc: remote error 1001: division by zero"},
		{&callError{"echo", &Error{Code: CodeServerError, Message: msgTooManyCalls}},
			`wsrpc: call "echo": remote error -32000 (server error): too many calls in flight`},
		{&callError{"echo", &notSentError{errorf("%w: %w", ErrConnectionLost, ErrKeepAliveTimeout)}},
			`wsrpc: call "echo": connection lost: keep-alive timeout`},
		{&callError{"echo", errorf("%w: %w", ErrNotConnected, context.DeadlineExceeded)},
			`wsrpc: call "echo": not connected: context deadline exceeded`},
		{&callError{"echo", errorf("%w: %v", ErrBadFrame, errors.New("frame is not valid JSON"))},
			`wsrpc: call "echo": bad frame from peer: frame is not valid JSON`},
		{errorf("connect %s: %w", "ws://h/ws", errorf("%w (last try: %w)", context.DeadlineExceeded, &HTTPError{StatusCode: 503, Message: "try later"})),
			"wsrpc: connect ws://h/ws: context deadline exceeded (last try: HTTP 503 Service Unavailable: try later)"},
		{errorf("connect %s: %w", "ws://h/ws", &handshakeError{&HTTPError{StatusCode: 200}, "not a WebSocket endpoint"}),
			"wsrpc: connect ws://h/ws: not a WebSocket endpoint"},
		{errorf("dial: %w", errorf("on connect: %w", &callError{"hello", ErrClosed})),
			`wsrpc: dial: on connect: call "hello": closed`},
		{&callError{"m", &callError{"nested", &PanicError{Method: "nested", Value: "boom"}}},
			`wsrpc: call "m": call "nested": handler for "nested" panicked: boom`},
		{ErrShuttingDown, "wsrpc: server shutting down"},
		{fmt.Errorf("lookup: %w", ErrClosed), "lookup: wsrpc: closed"},
		{&callError{"m", fmt.Errorf("lookup: %w", ErrClosed)}, `wsrpc: call "m": lookup: wsrpc: closed`},
	} {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("error text\n%q, want\n%q", got, tt.want)
		}
	}
}

// TestErrorfWraps: errorf's errors unwrap to its %w operands themselves.
func TestErrorfWraps(t *testing.T) {
	he := &HTTPError{StatusCode: 503}
	err := errorf("connect %s: %w", "ws://h/ws", errorf("%w (last try: %w)", context.DeadlineExceeded, he))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("%v: not context.DeadlineExceeded", err)
	}
	if got, ok := errors.AsType[*HTTPError](err); !ok || got != he {
		t.Errorf("%v: errors.As found %v, want the *HTTPError itself", err, got)
	}
	if errors.Is(errorf("%w: %v", ErrBadFrame, ErrClosed), ErrClosed) {
		t.Errorf("errorf wraps a %%v operand")
	}
}

// TestRemoteSentinels: a peer's refusals reach the caller, over a real
// socket, as errors that match ErrShuttingDown and ErrTooManyCalls.
func TestRemoteSentinels(t *testing.T) {
	wantOnly := func(t *testing.T, err, target, other error) {
		t.Helper()
		if !errors.Is(err, target) || errors.Is(err, other) {
			t.Errorf("err = %v: want %v and not %v", err, target, other)
		}
		if c := ErrorCode(err); c != CodeServerError {
			t.Errorf("ErrorCode(%v) = %d, want %d", err, c, CodeServerError)
		}
	}

	t.Run("Shutdown", func(t *testing.T) {
		ctx := ctxT(t)
		started, release := make(chan struct{}, 1), make(chan struct{})
		m := echoMux()
		Register(m, "hold", hold(started, release))
		srv, url := testServer(t, m, nil)
		cl := testDial(t, url, &DialOptions{DisableReconnect: true})
		held := make(chan error, 1)
		go func() { held <- cl.Call(ctx, "hold", nil, nil) }()
		recv(ctx, t, started, "the held call to start")
		shutdown := make(chan error, 1)
		go func() { shutdown <- srv.Shutdown(ctx) }()
		// The held call keeps Shutdown draining: calls are refused.
		var err error
		pollUntil(t, "a call to be refused", func() bool {
			_, err = Call[string](ctx, cl, "echo", textArgs{"x"})
			return err != nil
		})
		wantOnly(t, err, ErrShuttingDown, ErrTooManyCalls)
		close(release)
		if err := recv(ctx, t, held, "the held call"); err != nil {
			t.Errorf("held call: %v", err)
		}
		if err := recv(ctx, t, shutdown, "Shutdown to return"); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})

	t.Run("MaxConcurrentCalls", func(t *testing.T) {
		ctx := ctxT(t)
		started, release := make(chan struct{}, 1), make(chan struct{})
		m := echoMux()
		Register(m, "hold", hold(started, release))
		_, url := testServer(t, m, &ServerOptions{ConnOptions: ConnOptions{MaxConcurrentCalls: 1}})
		cl := testDial(t, url, nil)
		held := make(chan error, 1)
		go func() { held <- cl.Call(ctx, "hold", nil, nil) }()
		recv(ctx, t, started, "the held call to start")
		_, err := Call[string](ctx, cl, "echo", textArgs{"x"})
		wantOnly(t, err, ErrTooManyCalls, ErrShuttingDown)
		if want := `wsrpc: call "echo": remote error -32000 (server error): too many calls in flight`; err.Error() != want {
			t.Errorf("error text\n%q, want\n%q", err.Error(), want)
		}
		close(release)
		if err := recv(ctx, t, held, "the held call"); err != nil {
			t.Errorf("held call: %v", err)
		}
	})

	t.Run("call_me_back", func(t *testing.T) {
		ctx := ctxT(t)
		started, release := make(chan struct{}, maxPendingCallbacks), make(chan struct{})
		defer close(release)
		methods := NewMux()
		Register(methods, "hold", hold(started, release))
		_, url := testServer(t, utilMux(), &ServerOptions{ConnOptions: ConnOptions{CallTimeout: -1}})
		cl := testDial(t, url, &DialOptions{Methods: methods})
		args := map[string]any{"method_name": "hold", "args": map[string]any{}}
		for i := range maxPendingCallbacks {
			if _, err := Call[string](ctx, cl, "call_me_back", args); err != nil {
				t.Fatalf("call_me_back %d: %v", i, err)
			}
		}
		// maxPendingCallbacks callbacks wait for the client's answer.
		_, err := Call[string](ctx, cl, "call_me_back", args)
		wantOnly(t, err, ErrTooManyCalls, ErrShuttingDown)
	})
}

// TestHandlerReturnsRemoteSentinel: a handler that returns ErrShuttingDown
// or ErrTooManyCalls, wrapped or not, sends that answer, which its caller
// matches; it is the handler's choice, not a failure for OnError.
func TestHandlerReturnsRemoteSentinel(t *testing.T) {
	var reported errorLog
	m := NewMux()
	Register(m, "stopping", func(context.Context, struct{}) (int, error) { return 0, ErrShuttingDown })
	Register(m, "busy", func(context.Context, struct{}) (int, error) {
		return 0, fmt.Errorf("queue full: %w", ErrTooManyCalls)
	})
	_, url := testServer(t, m, &ServerOptions{ConnOptions: ConnOptions{OnError: reported.hook}})
	cl := testDial(t, url, nil)
	ctx := ctxT(t)
	for _, tt := range []struct {
		method string
		want   error
	}{
		{"stopping", ErrShuttingDown},
		{"busy", ErrTooManyCalls},
	} {
		err := cl.Call(ctx, tt.method, nil, nil)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.method, err, tt.want)
		}
		if e, ok := errors.AsType[*Error](err); !ok || e.Code != CodeServerError {
			t.Errorf("%s: %v, want a remote *Error with code %d", tt.method, err, CodeServerError)
		}
	}
	if reported.has(ErrShuttingDown) || reported.has(ErrTooManyCalls) {
		t.Errorf("OnError got a handler's chosen answer: %v", reported.errs)
	}
}
