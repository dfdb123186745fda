package main

import (
	"log/slog"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.DiscardHandler)) // the program logs with the default logger
	goleak.VerifyTestMain(m)
}

// Example runs the program as go run ./examples/pubsub does. A failure
// ends the test binary through log.Fatal, which fails the test.
func Example() {
	main()
	// Output: alice heard bob: hello from bob
}
