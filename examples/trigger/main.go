// Trigger shows a server that calls its client later, on its own: the
// client registers a wake-up call, and the server calls the client's
// wake_up method when the time has come.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/wsrpc/wsrpc"
)

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

type wakeUpCall struct {
	TimeDelta float64 `json:"time_delta"` // seconds
	Name      string  `json:"name"`
}

type wakeUp struct {
	Message string `json:"message"`
	Name    string `json:"name"`
}

func run(ctx context.Context, w io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()

	// The server answers register_wake_up_call at once, and calls the
	// caller's wake_up time_delta seconds later, unless the caller has gone.
	// The handler's ctx may end when it returns: the delayed call uses the
	// connection's context instead.
	mux := wsrpc.NewMux()
	wsrpc.Register(mux, "register_wake_up_call", func(ctx context.Context, a wakeUpCall) (bool, error) {
		caller := wsrpc.ConnFromContext(ctx)
		go func() {
			t := time.NewTimer(time.Duration(a.TimeDelta * float64(time.Second)))
			defer t.Stop()
			select {
			case <-t.C:
				msg := wakeUp{Message: "Good morning!", Name: a.Name}
				if err := caller.Call(caller.Context(), "wake_up", msg, nil); err != nil {
					slog.Warn("wake_up failed", "err", err)
				}
			case <-caller.Context().Done(): // the connection ended
			}
		}()
		return true, nil
	})
	srv, err := wsrpc.NewServer(mux, nil)
	if err != nil {
		return err
	}
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

	// The client exposes wake_up, which hands what it gets to run.
	woke := make(chan wakeUp, 1)
	methods := wsrpc.NewMux()
	wsrpc.Register(methods, "wake_up", func(ctx context.Context, msg wakeUp) (bool, error) {
		select {
		case woke <- msg:
		default: // woken already
		}
		return true, nil
	})
	client, err := wsrpc.Dial(ctx, "ws://"+ln.Addr().String()+"/ws", &wsrpc.DialOptions{Methods: methods})
	if err != nil {
		return err
	}
	defer client.Close()

	err = client.Call(ctx, "register_wake_up_call", wakeUpCall{TimeDelta: 0.1, Name: "gopher"}, nil)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "client: wake-up call registered")
	select {
	case msg := <-woke:
		fmt.Fprintf(w, "client: %s, %s\n", msg.Name, msg.Message)
		return nil
	case <-ctx.Done():
		return fmt.Errorf("no wake-up call: %w", ctx.Err())
	}
}
