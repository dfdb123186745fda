package main

import (
	"context"
	"log/slog"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/natsbroker"
	"github.com/wsrpc/wsrpc/pgbroker"
	"github.com/wsrpc/wsrpc/redisbroker"
)

// openFunc opens a broker at a URL and returns it with its Close.
type openFunc func(ctx context.Context, url string, logger *slog.Logger) (wsrpc.Broker, func() error, error)

// brokers opens a broker by its URL's scheme. Each adapter is a module of
// its own; the CLI imports them all.
var brokers = map[string]openFunc{
	"redis":      openRedis,
	"rediss":     openRedis,
	"nats":       openNATS,
	"postgres":   openPostgres,
	"postgresql": openPostgres,
}

func openRedis(ctx context.Context, url string, logger *slog.Logger) (wsrpc.Broker, func() error, error) {
	b, err := redisbroker.Dial(ctx, url, &redisbroker.Options{Logger: logger})
	if err != nil {
		return nil, nil, err
	}
	return b, b.Close, nil
}

func openNATS(ctx context.Context, url string, logger *slog.Logger) (wsrpc.Broker, func() error, error) {
	b, err := natsbroker.Dial(ctx, url, &natsbroker.Options{Logger: logger})
	if err != nil {
		return nil, nil, err
	}
	return b, b.Close, nil
}

func openPostgres(ctx context.Context, url string, logger *slog.Logger) (wsrpc.Broker, func() error, error) {
	b, err := pgbroker.Dial(ctx, url, &pgbroker.Options{Logger: logger})
	if err != nil {
		return nil, nil, err
	}
	return b, func() error { b.Close(); return nil }, nil
}
