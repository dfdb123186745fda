module github.com/wsrpc/wsrpc

go 1.26

require (
	github.com/cenkalti/backoff/v5 v5.0.3
	github.com/gorilla/websocket v1.5.3 // internal/wsconn relies on its internals (see its doc.go): go test ./internal/wsconn must pass before an upgrade
	go.uber.org/goleak v1.3.0
)
