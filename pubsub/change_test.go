package pubsub

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wsrpc/wsrpc"
)

// TestUnsubscribeBoundedByContext: against a server that stops answering,
// Unsubscribe returns when its context ends, with the context's error,
// and the topic is gone from the client (it used to wait for the
// connection's CallTimeout restoring the subscription, then keep it).
func TestUnsubscribeBoundedByContext(t *testing.T) {
	ctx := ctxT(t)
	mux := wsrpc.NewMux()
	wsrpc.Register(mux, "subscribe", func(context.Context, struct {
		Topics []string `json:"topics"`
	}) (bool, error) {
		return true, nil
	})
	wsrpc.Register(mux, "unsubscribe", func(ctx context.Context, _ struct {
		Topics []string `json:"topics"`
	}) (bool, error) {
		<-ctx.Done() // never answers while the connection lives
		return false, ctx.Err()
	})
	srv, err := wsrpc.NewServer(mux, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{Logger: quiet()}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(http.Handler(srv))
	defer hs.Close()
	defer srv.Close()
	cl := dial(t, "ws"+strings.TrimPrefix(hs.URL, "http"), nil)
	if err := cl.Subscribe(ctx, "x", func(context.Context, Event) error { return nil }); err != nil {
		t.Fatal(err)
	}
	uctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cl.Unsubscribe(uctx, "x") }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Unsubscribe: %v, want its context's deadline", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Unsubscribe outlived its context by 10 s")
	}
	if slices.Contains(cl.Topics(), "x") {
		t.Errorf("Topics() = %v after Unsubscribe: the handler is gone in any case", cl.Topics())
	}
}
