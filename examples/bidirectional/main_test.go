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

// Example runs the program as go run ./examples/bidirectional does
// (README.md shows main.go as it is). A failure ends the test binary
// through log.Fatal, which fails the test.
func Example() {
	main()
	// Output:
	// client: the server asks who I am
	// server: hello, gopher
}
