package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/cluster"
	"github.com/wsrpc/wsrpc/pubsub"
)

// brokerSchemes lists the schemes --broker takes, for messages.
func brokerSchemes() string {
	var s []string
	for k := range brokers {
		s = append(s, k+"://")
	}
	slices.Sort(s)
	return strings.Join(s, ", ")
}

// openBroker opens the broker at raw, a URL whose scheme picks the adapter.
// Without one (raw empty), the node is alone: a broker of its own carries
// its routed calls to itself.
func openBroker(ctx context.Context, raw string, logger *slog.Logger) (b wsrpc.Broker, closeFn func() error, err error) {
	if raw == "" {
		return pubsub.NewMemoryBroker(), func() error { return nil }, nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return nil, nil, fmt.Errorf("--broker %q: not a URL (want one of %s)", redact(raw), brokerSchemes())
	}
	open, ok := brokers[u.Scheme]
	if !ok {
		return nil, nil, fmt.Errorf("--broker: unknown scheme %q (want one of %s)", u.Scheme, brokerSchemes())
	}
	b, closeFn, err = open(ctx, raw, logger)
	if err != nil {
		return nil, nil, fmt.Errorf("--broker %s: %w", redact(raw), err)
	}
	return b, closeFn, nil
}

// routedCallArgs are the arguments of call_client.
type routedCallArgs struct {
	ClientID  string          `json:"client_id"`
	Method    string          `json:"method"`
	Arguments json.RawMessage `json:"arguments,omitempty"`
}

// registerCluster registers the demo's cluster methods on d.mux:
//
//	call_client(client_id, method, arguments)   calls method on the client
//	    client_id, on whichever node it is connected, and returns its result
//	clients()   the client connections of the cluster: [{node, client_id, conn_id}]
//	node()      this node's id
func (d *demo) registerCluster() {
	wsrpc.Register(d.mux, "call_client", func(ctx context.Context, a routedCallArgs) (json.RawMessage, error) {
		if a.ClientID == "" || a.Method == "" {
			return nil, wsrpc.Errorf(wsrpc.CodeInvalidParams, "client_id and method are required")
		}
		var args any
		if len(a.Arguments) > 0 && string(a.Arguments) != "null" {
			args = a.Arguments
		}
		var r json.RawMessage
		err := d.node.Call(ctx, a.ClientID, a.Method, args, &r)
		if e, ok := errors.AsType[*wsrpc.Error](err); ok {
			return nil, e // the client's error, unchanged
		}
		if errors.Is(err, cluster.ErrNoSuchClient) {
			return nil, wsrpc.Errorf(wsrpc.CodeServerError, "no node has client %q", a.ClientID)
		}
		if err != nil {
			return nil, wsrpc.Errorf(wsrpc.CodeServerError, "call %s on client %q: %v", a.Method, a.ClientID, err)
		}
		return r, nil
	})
	type clientJSON struct {
		Node     string `json:"node"`
		ClientID string `json:"client_id"`
		ConnID   string `json:"conn_id"`
	}
	wsrpc.Register(d.mux, "clients", func(ctx context.Context, _ struct{}) ([]clientJSON, error) {
		list, err := d.node.Clients(ctx)
		if err != nil {
			return nil, wsrpc.Errorf(wsrpc.CodeServerError, "list the clients: %v", err)
		}
		out := make([]clientJSON, 0, len(list))
		for _, c := range list {
			out = append(out, clientJSON{c.Node, c.ClientID, c.ConnID})
		}
		return out, nil
	})
	wsrpc.Register(d.mux, "node", func(context.Context, struct{}) (string, error) {
		return d.node.ID(), nil
	})
}
