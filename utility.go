package wsrpc

import (
	"context"
	"encoding/json"
	"os"

	"github.com/wsrpc/wsrpc/internal/bind"
	"github.com/wsrpc/wsrpc/internal/wire"
)

// ProcessDetails is the result of the utility method get_process_details.
type ProcessDetails struct {
	PID        int      `json:"pid"`
	Cmd        []string `json:"cmd"`
	WorkingDir string   `json:"workingdir"`
}

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
// Responses are kept per connection, at most 1,000 (the oldest go first).
func RegisterUtilities(m *Mux) {
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
		return c.callBack(a.MethodName, args), nil
	})
	m.add("get_response", &method{serve: func(ctx context.Context, args []byte, h bind.Hint, out []byte) ([]byte, string, error) {
		a, err := bindArgs[getResponseParams](getResponseArgs, args, h)
		if err != nil {
			return out, "", err
		}
		c := ConnFromContext(ctx)
		r, ok := c.takeResponse(a.CallID)
		if !ok {
			return out, "", Errorf(CodeInvalidParams, "get_response: no response kept for call id %q", a.CallID)
		}
		b, err := json.Marshal(r)
		if err != nil {
			return out, "", err
		}
		return append(out, b...), "Any", nil // the Python library's result_type for it
	}})
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

const maxStoredResponses = 1000

// callBack calls method on the peer under a new call id, in a goroutine the
// connection owns, and keeps the response for get_response.
func (c *Conn) callBack(method string, args []byte) string {
	id := wire.NewCallID()
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return id
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		sr := storedResponse{CallID: id, Result: json.RawMessage("null")}
		r, err := c.roundTrip(c.ctx, method, args, id)
		switch {
		case err != nil:
			sr.ResultType = "error"
			sr.Error = toWireError(err)
		case r.remoteError() != nil:
			sr.ResultType = "error"
			sr.Error = r.remoteError()
		default:
			if r.result != nil {
				sr.Result = append(json.RawMessage(nil), r.result...)
			}
			sr.ResultType = string(r.typ)
		}
		putBuf(r.buf)
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.stored == nil {
			c.stored = make(map[string]storedResponse)
		}
		if len(c.storedOrder) >= maxStoredResponses {
			delete(c.stored, c.storedOrder[0])
			c.storedOrder = c.storedOrder[1:]
		}
		c.stored[id] = sr
		c.storedOrder = append(c.storedOrder, id)
	}()
	return id
}

func (c *Conn) takeResponse(id string) (storedResponse, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.stored[id]
	if ok {
		delete(c.stored, id)
		for i, s := range c.storedOrder {
			if s == id {
				c.storedOrder = append(c.storedOrder[:i], c.storedOrder[i+1:]...)
				break
			}
		}
	}
	return r, ok
}
