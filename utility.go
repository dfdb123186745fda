package wsrpc

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"sync"

	"github.com/wsrpc/wsrpc/internal/bind"
	"github.com/wsrpc/wsrpc/internal/wire"
)

// ProcessDetails is the result of the utility method get_process_details.
type ProcessDetails struct {
	PID        int      `json:"pid"`
	Cmd        []string `json:"cmd"`
	WorkingDir string   `json:"workingdir"`
}

// The utility methods' bounds, per connection. A peer may call
// call_me_back at any rate; these keep what one connection can make the
// process hold to about maxPendingCallbacks goroutines and maxStoredBytes
// of answers.
const (
	// maxPendingCallbacks bounds the calls call_me_back has made to the
	// peer that still wait for its answer. Each holds a goroutine and a
	// pending call (about 6 KiB) until the peer answers, the call times
	// out (CallTimeout) or the connection ends. A trigger is answered at
	// once, so a well-behaved peer has a handful pending; 64 leaves room
	// for a test that fires a burst.
	maxPendingCallbacks = 64
	// maxStoredResponses bounds the answers kept for get_response.
	maxStoredResponses = 1000
	// maxStoredBytes bounds the answers kept for get_response, in bytes
	// (see [storedResponse.size]): four answers of the default
	// MaxMessageSize fit.
	maxStoredBytes = 4 << 20
)

// errTooManyCallbacks answers a call_me_back over maxPendingCallbacks. Its
// caller's error matches ErrTooManyCalls ([Error.Is]).
var errTooManyCallbacks = Errorf(CodeServerError,
	msgTooManyCallbacks+" (at most %d per connection)", maxPendingCallbacks)

// RegisterUtilities adds to m the utility methods the Python library offers
// as a ready set (RpcUtilityMethods), so that peers and tests written for it
// find them:
//
//   - echo(text) returns text.
//   - get_process_details() returns {"pid", "cmd", "workingdir"}.
//   - call_me_back(method_name, args) returns a new call id at once, then
//     calls method_name with keyword arguments args on the caller, under
//     that call id, and keeps the response.
//   - get_response(call_id) returns the response kept for call_id, as
//     {"result", "result_type", "call_id"}, and forgets it.
//
// The methods are bounded per connection:
//
//   - At most 64 of call_me_back's calls wait for the peer's answer at
//     once. A call_me_back over that is answered at once with a
//     [CodeServerError] error, which matches [ErrTooManyCalls] with
//     [errors.Is], and calls nothing. A call ends when the peer answers,
//     when it times out (CallTimeout) or when the connection ends.
//   - At most 1,000 responses, and at most 4 MiB of them (results and
//     error messages), are kept: the oldest go first to make room. A
//     response larger than 4 MiB on its own is kept as an error response
//     ([CodeServerError]) saying it was too large.
//
// Kept responses are dropped when their connection ends. Connections that
// share m share nothing else: each sees only its own responses.
func RegisterUtilities(m *Mux) { registerUtilities(m) }

// registerUtilities is RegisterUtilities; it returns the methods' state for
// tests.
func registerUtilities(m *Mux) *utilities {
	u := &utilities{conns: make(map[*Conn]*connStore)}
	// The text is encoded into the answer before the handler's frame is
	// released: RawText saves the copy of a large argument.
	Register(m, "echo", func(ctx context.Context, a struct {
		Text RawText `json:"text"`
	}) (RawText, error) {
		return a.Text, nil
	})
	Register(m, "get_process_details", func(context.Context, struct{}) (ProcessDetails, error) {
		wd, _ := os.Getwd()
		return ProcessDetails{PID: os.Getpid(), Cmd: os.Args, WorkingDir: wd}, nil
	})
	Register(m, "call_me_back", func(ctx context.Context, a struct {
		MethodName string          `json:"method_name"`
		Args       json.RawMessage `json:"args,omitempty"`
	}) (string, error) {
		c := ConnFromContext(ctx)
		if c == nil {
			return "", Errorf(CodeInternalError, "call_me_back: no connection")
		}
		if a.MethodName == "" {
			return "", Errorf(CodeInvalidParams, "call_me_back: method_name is empty")
		}
		args, err := encodeArgs(a.Args)
		if err != nil {
			return "", Errorf(CodeInvalidParams, "call_me_back: args: %v", err)
		}
		return u.callBack(c, a.MethodName, args)
	})
	m.add("get_response", &method{serve: func(ctx context.Context, args []byte, h bind.Hint, out []byte) ([]byte, string, error) {
		a, err := bindArgs[getResponseParams](getResponseArgs, args, h)
		if err != nil {
			return out, "", err
		}
		r, ok := u.take(ConnFromContext(ctx), a.CallID)
		if !ok {
			return out, "", Errorf(CodeInvalidParams, "get_response: no response kept for call id %q", a.CallID)
		}
		b, err := json.Marshal(r)
		if err != nil {
			return out, "", err
		}
		return append(out, b...), "Any", nil // the Python library's result_type for it
	}})
	return u
}

type getResponseParams struct {
	CallID string `json:"call_id"`
}

var getResponseArgs = mustArgSpec[getResponseParams]()

// storedResponse is a response kept for get_response.
type storedResponse struct {
	Result     json.RawMessage `json:"result"`
	ResultType string          `json:"result_type"`
	CallID     string          `json:"call_id"`
	Error      *Error          `json:"error,omitempty"`
}

// size is what r counts against maxStoredBytes: the bytes it holds.
func (r storedResponse) size() int {
	n := len(r.Result) + len(r.ResultType) + len(r.CallID)
	if r.Error != nil {
		n += len(r.Error.Message) + len(r.Error.Data)
	}
	return n
}

// utilities is the state of one Mux's utility methods, per connection. A
// connection's entry is made by its first call_me_back and deleted when
// the connection ends (context.AfterFunc on [Conn.Context]), so a Conn
// holds nothing for them.
type utilities struct {
	mu    sync.Mutex
	conns map[*Conn]*connStore // guarded by mu, and so is each *connStore
}

// connStore is one connection's share of [utilities]; utilities.mu guards
// it.
type connStore struct {
	pending int                       // callbacks waiting for the peer
	stored  map[string]storedResponse // answers kept for get_response
	order   []string                  // their call ids, oldest first
	bytes   int                       // the sum of their sizes
}

// storeLocked returns c's entry, made if needed, or nil once c has ended;
// u.mu held.
func (u *utilities) storeLocked(c *Conn) *connStore {
	if s := u.conns[c]; s != nil {
		return s
	}
	ctx := c.Context()
	if ctx.Err() != nil {
		// Ended: an entry made now would never be deleted.
		return nil
	}
	s := &connStore{stored: make(map[string]storedResponse)}
	u.conns[c] = s
	context.AfterFunc(ctx, func() {
		u.mu.Lock()
		defer u.mu.Unlock()
		if u.conns[c] == s {
			delete(u.conns, c)
		}
	})
	return s
}

// callBack calls method on c's peer under a new call id, in a goroutine
// that c owns (c.wg: Conn.Done waits for it), and keeps the response for
// get_response. It fails at once when maxPendingCallbacks calls wait
// already.
func (u *utilities) callBack(c *Conn, method string, args []byte) (string, error) {
	id := wire.NewCallID()
	u.mu.Lock()
	s := u.storeLocked(c)
	if s == nil {
		u.mu.Unlock()
		return id, nil // ended: the id cannot reach the peer either
	}
	if s.pending >= maxPendingCallbacks {
		u.mu.Unlock()
		return "", errTooManyCallbacks
	}
	s.pending++
	u.mu.Unlock()

	if !c.join() {
		u.mu.Lock()
		s.pending--
		u.mu.Unlock()
		return id, nil
	}
	go func() {
		defer c.wg.Done()
		r := callPeer(c, method, args, id)
		u.mu.Lock()
		defer u.mu.Unlock()
		s.pending--
		if u.conns[c] == s {
			s.keep(r)
		}
	}()
	return id, nil
}

// callPeer makes one call_me_back call and returns what get_response
// will tell of it.
func callPeer(c *Conn, method string, args []byte, id string) storedResponse {
	sr := storedResponse{CallID: id, Result: json.RawMessage("null")}
	r, err := c.roundTrip(c.Context(), method, args, id)
	remote := r.remoteError() // nil when err is set: r is then empty
	switch {
	case err != nil:
		sr.ResultType = "error"
		sr.Error = toWireError(err)
	case remote != nil:
		sr.ResultType = "error"
		sr.Error = remote
	default:
		if r.result != nil {
			sr.Result = append(json.RawMessage(nil), r.result...)
		}
		sr.ResultType = string(r.typ)
	}
	putBuf(r.buf)
	return sr
}

// keep stores r, evicting the oldest responses until it fits in
// maxStoredResponses and maxStoredBytes. A response over maxStoredBytes on
// its own is replaced by an error response saying so.
func (s *connStore) keep(r storedResponse) {
	if n := r.size(); n > maxStoredBytes {
		r = storedResponse{
			CallID:     r.CallID,
			Result:     json.RawMessage("null"),
			ResultType: "error",
			Error: Errorf(CodeServerError, "call_me_back: response of %d bytes too large to keep (at most %d)",
				n, maxStoredBytes),
		}
	}
	n := r.size()
	for len(s.order) > 0 && (len(s.order) >= maxStoredResponses || s.bytes+n > maxStoredBytes) {
		old := s.order[0]
		s.order[0] = ""
		s.order = s.order[1:]
		s.bytes -= s.stored[old].size()
		delete(s.stored, old)
	}
	s.stored[r.CallID] = r
	s.order = append(s.order, r.CallID)
	s.bytes += n
}

// take removes and returns the response kept for c under id.
func (u *utilities) take(c *Conn, id string) (storedResponse, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.conns[c]
	if s == nil {
		return storedResponse{}, false
	}
	r, ok := s.stored[id]
	if !ok {
		return storedResponse{}, false
	}
	delete(s.stored, id)
	s.bytes -= r.size()
	if i := slices.Index(s.order, id); i >= 0 {
		s.order = slices.Delete(s.order, i, i+1)
	}
	return r, true
}
