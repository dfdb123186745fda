package main

import (
	"context"
	"log/slog"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/natsbroker"
	"github.com/wsrpc/wsrpc/pgbroker"
	"github.com/wsrpc/wsrpc/redisbroker"
)

func init() {
	openRedis := func(ctx context.Context, url string, logger *slog.Logger) (wsrpc.Broker, func() error, error) {
		b, err := redisbroker.Dial(ctx, url, &redisbroker.Options{Logger: logger})
		if err != nil {
			return nil, nil, err
		}
		return b, b.Close, nil
	}
	openNATS := func(ctx context.Context, url string, logger *slog.Logger) (wsrpc.Broker, func() error, error) {
		b, err := natsbroker.Dial(ctx, url, &natsbroker.Options{Logger: logger})
		if err != nil {
			return nil, nil, err
		}
		return b, b.Close, nil
	}
	openPostgres := func(ctx context.Context, url string, logger *slog.Logger) (wsrpc.Broker, func() error, error) {
		b, err := pgbroker.Dial(ctx, url, &pgbroker.Options{Logger: logger})
		if err != nil {
			return nil, nil, err
		}
		return b, func() error { b.Close(); return nil }, nil
	}
	brokers["redis"], brokers["rediss"] = openRedis, openRedis
	brokers["nats"] = openNATS
	brokers["postgres"], brokers["postgresql"] = openPostgres, openPostgres
}
