package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/wsrpc/wsrpc"
)

// TestCallClientLocal: without --broker, call_client reaches a client of
// the same node by its {client_id}, passes its result and its error on
// unchanged, and says at once when no client has that id; clients and
// node describe the node.
func TestCallClientLocal(t *testing.T) {
	t.Parallel()
	s := startServe(t, nil)
	methods := wsrpc.NewMux()
	wsrpc.Register(methods, "whoami", func(_ context.Context, a struct {
		Greeting string `json:"greeting"`
	}) (string, error) {
		return a.Greeting + ", I am alice", nil
	})
	wsrpc.Register(methods, "fail", func(context.Context, struct{}) (any, error) {
		return nil, &wsrpc.Error{Code: 42, Message: "alice refuses", Data: json.RawMessage(`{"why":"test"}`)}
	})
	dialQuiet(t, s.url+"/alice", methods)
	caller := dialQuiet(t, s.url, nil)

	got, err := wsrpc.Call[string](t.Context(), caller, "call_client", map[string]any{
		"client_id": "alice", "method": "whoami", "arguments": map[string]string{"greeting": "hello"},
	})
	if err != nil || got != "hello, I am alice" {
		t.Fatalf("call_client whoami = %q, %v", got, err)
	}
	_, err = wsrpc.Call[any](t.Context(), caller, "call_client", map[string]any{"client_id": "alice", "method": "fail"})
	if e, ok := errors.AsType[*wsrpc.Error](err); !ok || e.Code != 42 || e.Message != "alice refuses" || string(e.Data) != `{"why":"test"}` {
		t.Errorf("call_client fail = %v, want alice's error unchanged", err)
	}
	_, err = wsrpc.Call[any](t.Context(), caller, "call_client", map[string]any{"client_id": "nobody", "method": "whoami"})
	if e, ok := errors.AsType[*wsrpc.Error](err); !ok || e.Code != wsrpc.CodeServerError || !strings.Contains(e.Message, `no node has client "nobody"`) {
		t.Errorf("call_client to an unknown client = %v, want -32000 saying no node has it", err)
	}

	node, err := wsrpc.Call[string](t.Context(), caller, "node", nil)
	if err != nil || node == "" {
		t.Fatalf("node() = %q, %v", node, err)
	}
	list, err := wsrpc.Call[[]map[string]string](t.Context(), caller, "clients", nil)
	if err != nil {
		t.Fatal(err)
	}
	var alice int
	for _, c := range list {
		if c["node"] != node {
			t.Errorf("client %v on another node than %s", c, node)
		}
		if c["client_id"] == "alice" {
			alice++
		}
	}
	if len(list) != 2 || alice != 1 {
		t.Errorf("clients() = %v, want alice and the caller", list)
	}
}

// TestServeBrokerFlag: --broker with a scheme no adapter serves, or no URL
// at all, fails at startup with a message naming the schemes.
func TestServeBrokerFlag(t *testing.T) {
	t.Parallel()
	for _, url := range []string{"kafka://127.0.0.1:9092", "not a url"} {
		r := runCmd(t, "", "serve", "--addr", "127.0.0.1:0", "--broker", url)
		if r.code != exitFail || !strings.Contains(r.stderr, "--broker") || !strings.Contains(r.stderr, "want one of") {
			t.Errorf("--broker %q: exit %d, stderr %q; want %d and the schemes", url, r.code, r.stderr, exitFail)
		}
	}
}
