package pubsub

import (
	"context"
	"encoding/json"
	"fmt"
)

// Event is one event as a subscriber gets it: its topic (the real one,
// also for an AllTopics subscription) and its data, raw JSON (null when
// the publisher sent none). Data may be kept, and must not be modified: a
// server shares it among the subscriptions it goes to.
type Event struct {
	Topic string
	Data  json.RawMessage
}

// Decode decodes the event's data into v, with encoding/json.
func (e Event) Decode(v any) error {
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("pubsub: decode the data of an event on %q: %w", e.Topic, err)
	}
	return nil
}

// Handler handles the events of a subscription: a [Client]'s or a
// [Server]'s. It gets them one at a time, in order. An error it returns
// is logged (Warn), and the next event comes all the same.
type Handler func(ctx context.Context, ev Event) error

// Typed adapts fn, which takes an event's data decoded as a T, to a
// [Handler]. Data that does not decode as a T fails the event (fn does not
// see it).
//
//	cl.Subscribe(ctx, "orders", pubsub.Typed(func(ctx context.Context, topic string, o Order) error { … }))
func Typed[T any](fn func(ctx context.Context, topic string, data T) error) Handler {
	return func(ctx context.Context, ev Event) error {
		var v T
		if err := ev.Decode(&v); err != nil {
			return err
		}
		return fn(ctx, ev.Topic, v)
	}
}
