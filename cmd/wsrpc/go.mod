module github.com/wsrpc/wsrpc/cmd/wsrpc

go 1.26.0

require (
	github.com/gorilla/websocket v1.5.3
	github.com/prometheus/client_golang v1.25.0
	github.com/wsrpc/wsrpc v0.0.0-00010101000000-000000000000
	github.com/wsrpc/wsrpc/natsbroker v0.0.0-00010101000000-000000000000
	github.com/wsrpc/wsrpc/pgbroker v0.0.0-00010101000000-000000000000
	github.com/wsrpc/wsrpc/promwsrpc v0.0.0-00010101000000-000000000000
	github.com/wsrpc/wsrpc/redisbroker v0.0.0-00010101000000-000000000000
	go.uber.org/goleak v1.3.0
)

require (
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cenkalti/backoff/v5 v5.0.3 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/pgx/v5 v5.13.0 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	github.com/klauspost/compress v1.20.1 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/nats-io/nats.go v1.56.0 // indirect
	github.com/nats-io/nkeys v0.4.16 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	github.com/prometheus/client_model v0.6.3 // indirect
	github.com/prometheus/common v0.72.0 // indirect
	github.com/prometheus/procfs v0.22.0 // indirect
	github.com/redis/go-redis/v9 v9.23.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/crypto v0.57.0 // indirect
	golang.org/x/sync v0.23.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	golang.org/x/text v0.42.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

replace (
	github.com/wsrpc/wsrpc => ../..
	github.com/wsrpc/wsrpc/natsbroker => ../../natsbroker
	github.com/wsrpc/wsrpc/pgbroker => ../../pgbroker
	github.com/wsrpc/wsrpc/promwsrpc => ../../promwsrpc
	github.com/wsrpc/wsrpc/redisbroker => ../../redisbroker
)
