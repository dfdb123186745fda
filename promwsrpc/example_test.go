package promwsrpc_test

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/promwsrpc"
)

// A server whose metrics are served on /metrics beside its WebSocket
// endpoint, as Prometheus scrapes them. (A real server would register on
// prometheus.DefaultRegisterer and mount promhttp.Handler(), which also
// reports the Go runtime's metrics.)
func ExampleNew() {
	ctx := context.Background()
	metrics := promwsrpc.New(nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics)

	mux := wsrpc.NewMux()
	wsrpc.Register(mux, "greet", func(context.Context, struct{}) (string, error) { return "hello", nil })
	srv, err := wsrpc.NewServer(mux, &wsrpc.ServerOptions{
		ConnOptions: wsrpc.ConnOptions{Observer: metrics},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	routes := http.NewServeMux()
	routes.Handle("/ws", srv)
	routes.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	hs := &http.Server{Handler: routes}
	defer hs.Close()
	go hs.Serve(ln)

	cl, err := wsrpc.Dial(ctx, "ws://"+ln.Addr().String()+"/ws", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	for range 2 {
		if _, err := wsrpc.Call[string](ctx, cl, "greet", nil); err != nil {
			log.Fatal(err)
		}
	}
	wsrpc.Call[string](ctx, cl, "nope", nil)
	// A call is counted once its answer is on its way, so an answer can
	// reach the client before its call is counted. Shut the server down
	// (it waits for its handlers) for the count of every call made.
	if err := srv.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}

	// What Prometheus would scrape.
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "wsrpc_server_handled_total") || strings.HasPrefix(line, "wsrpc_server_refused_total") ||
			strings.HasPrefix(line, "wsrpc_connections_open ") {
			fmt.Println(line)
		}
	}
	// Output:
	// wsrpc_connections_open 0
	// wsrpc_server_handled_total{code="OK",method="greet"} 2
	// wsrpc_server_refused_total{method="unknown",reason="method_not_found"} 1
}
