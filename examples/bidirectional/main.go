// Bidirectional shows calls in both directions on one connection: the
// client exposes a method, whoami, and the server's greet calls it back
// while the client's call to greet is still open.
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"

	"github.com/wsrpc/wsrpc"
)

func main() {
	ctx := context.Background()

	// Server: greet asks its caller who it is, then greets it. A handler's
	// context carries the calling connection.
	mux := wsrpc.NewMux()
	wsrpc.Register(mux, "greet", func(ctx context.Context, _ struct{}) (string, error) {
		caller := wsrpc.ConnFromContext(ctx)
		name, err := wsrpc.Call[string](ctx, caller, "whoami", nil)
		if err != nil {
			return "", err
		}
		return "hello, " + name, nil
	})
	srv, err := wsrpc.NewServer(mux, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	routes := http.NewServeMux()
	routes.Handle("/ws", srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go http.Serve(ln, routes) // returns when ln is closed

	// Client: exposes whoami to the server, then calls greet.
	methods := wsrpc.NewMux()
	wsrpc.Register(methods, "whoami", func(context.Context, struct{}) (string, error) {
		fmt.Println("client: the server asks who I am")
		return "gopher", nil
	})
	cl, err := wsrpc.Dial(ctx, "ws://"+ln.Addr().String()+"/ws", &wsrpc.DialOptions{Methods: methods})
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	greeting, err := wsrpc.Call[string](ctx, cl, "greet", nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("server:", greeting)
}
