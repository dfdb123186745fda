// Simple is the smallest wsrpc program: a server that exposes one method,
// concat, and a client that calls it and prints "hello world".
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

// concatArgs are concat's keyword arguments.
type concatArgs struct {
	A string `json:"a"`
	B string `json:"b"`
}

func run(ctx context.Context, w io.Writer) error {
	// The server exposes concat(a, b) on /ws.
	mux := wsrpc.NewMux()
	wsrpc.Register(mux, "concat", func(ctx context.Context, args concatArgs) (string, error) {
		return args.A + args.B, nil
	})
	srv := wsrpc.NewServer(mux, nil)
	defer srv.Close() // closes the WebSockets, which http.Server.Close leaves open

	routes := http.NewServeMux()
	routes.Handle("/ws", srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: routes}
	go hs.Serve(ln)
	defer hs.Close()

	// The client connects and calls it.
	client, err := wsrpc.Dial(ctx, "ws://"+ln.Addr().String()+"/ws", nil)
	if err != nil {
		return err
	}
	defer client.Close()

	s, err := wsrpc.Call[string](ctx, client, "concat", concatArgs{A: "hello", B: " world"})
	if err != nil {
		return err
	}
	fmt.Fprintln(w, s)
	return nil
}
