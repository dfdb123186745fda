package main

import (
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wsrpc/wsrpc/promwsrpc"
)

// metrics is what --metrics sets up: the observer that counts, and the
// listener and handler that serve the counts to Prometheus.
type metrics struct {
	observer *promwsrpc.Metrics
	handler  http.Handler
	ln       net.Listener
}

// listenMetrics listens on addr for Prometheus's scrapes of /metrics: the
// wsrpc_* series of promwsrpc, and the Go runtime's and the process's.
func listenMetrics(addr string) (*metrics, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	m := promwsrpc.New(nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return &metrics{observer: m, handler: mux, ln: ln}, nil
}
