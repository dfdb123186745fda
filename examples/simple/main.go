// Simple is the smallest wsrpc program: a server that exposes one method,
// concat, and a client that calls it and prints "hello world".
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"

	"github.com/wsrpc/wsrpc"
)

// ConcatArgs are concat's keyword arguments: {"a": ..., "b": ...}.
type ConcatArgs struct {
	A string `json:"a"`
	B string `json:"b"`
}

func main() {
	ctx := context.Background()

	// Server: methods on a Mux, served as an http.Handler on any router.
	mux := wsrpc.NewMux()
	wsrpc.Register(mux, "concat", func(ctx context.Context, a ConcatArgs) (string, error) {
		return a.A + a.B, nil
	})
	srv, err := wsrpc.NewServer(mux, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close() // closes the WebSockets, which closing the listener leaves open
	routes := http.NewServeMux()
	routes.Handle("/ws", srv)

	// Listen before serving: an address in use stops the program here,
	// before the client can reach whatever holds it. Port 0 is a free port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go http.Serve(ln, routes) // returns when ln is closed

	// Client: dial (with retries), call, decode the result.
	cl, err := wsrpc.Dial(ctx, "ws://"+ln.Addr().String()+"/ws", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	s, err := wsrpc.Call[string](ctx, cl, "concat", ConcatArgs{A: "hello", B: " world"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(s) // hello world
}
