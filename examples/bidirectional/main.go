// Bidirectional shows calls in both directions on one connection: the
// client exposes a method, whoami, and the server's greet calls it back
// while the client's call to greet is still open.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"

	"github.com/wsrpc/wsrpc"
)

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer) error {
	// The server's greet asks its caller who it is, then greets it.
	mux := wsrpc.NewMux()
	wsrpc.Register(mux, "greet", func(ctx context.Context, _ struct{}) (string, error) {
		caller := wsrpc.ConnFromContext(ctx)
		name, err := wsrpc.Call[string](ctx, caller, "whoami", nil)
		if err != nil {
			return "", err
		}
		return "hello, " + name, nil
	})
	srv := wsrpc.NewServer(mux, nil)
	defer srv.Close()

	routes := http.NewServeMux()
	routes.Handle("/ws", srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: routes}
	go hs.Serve(ln)
	defer hs.Close()

	// The client exposes whoami to the server.
	methods := wsrpc.NewMux()
	wsrpc.Register(methods, "whoami", func(context.Context, struct{}) (string, error) {
		fmt.Fprintln(w, "client: the server asks who I am")
		return "gopher", nil
	})
	client, err := wsrpc.Dial(ctx, "ws://"+ln.Addr().String()+"/ws", &wsrpc.DialOptions{Methods: methods})
	if err != nil {
		return err
	}
	defer client.Close()

	greeting, err := wsrpc.Call[string](ctx, client, "greet", nil)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "server:", greeting)
	return nil
}
