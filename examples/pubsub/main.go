// Pubsub is a chat room over wsrpc's pub/sub, wire-compatible with
// fastapi_websocket_pubsub: a server, and two clients that subscribe to the
// topic "room" and publish to it. A client hears the others, not itself.
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/pubsub"
)

// Message is the data of an event on "room".
type Message struct {
	From string `json:"from"`
	Text string `json:"text"`
}

func main() {
	ctx := context.Background()

	// Server: pub/sub's methods (subscribe, unsubscribe, publish, ping) on a
	// Mux, at /pubsub as a Python PubSubEndpoint serves them.
	ps := pubsub.NewServer(nil)
	defer ps.Close()
	mux := wsrpc.NewMux()
	srv, err := wsrpc.NewServer(mux, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ps.Register(srv, mux)
	routes := http.NewServeMux()
	routes.Handle("/pubsub", srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go http.Serve(ln, routes) // returns when ln is closed
	url := "ws://" + ln.Addr().String() + "/pubsub"

	// Two clients in the room; each prints what it hears.
	heard := make(chan string, 2)
	for _, name := range []string{"alice", "bob"} {
		cl, err := pubsub.Dial(ctx, url, nil)
		if err != nil {
			log.Fatal(err)
		}
		defer cl.Close()
		err = cl.Subscribe(ctx, "room", pubsub.Typed(func(ctx context.Context, topic string, m Message) error {
			heard <- fmt.Sprintf("%s heard %s: %s", name, m.From, m.Text)
			return nil
		}))
		if err != nil {
			log.Fatal(err)
		}
		// Publish returns once the others took the event (sync).
		if err := cl.Publish(ctx, []string{"room"}, Message{From: name, Text: "hello from " + name}); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println(<-heard) // alice heard bob: hello from bob
}
