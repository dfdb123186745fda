package main

import (
	"bytes"
	"log/slog"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.DiscardHandler)) // the example logs with the default logger
	goleak.VerifyTestMain(m)
}

func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), &out); err != nil {
		t.Fatal(err)
	}
	want := "client: wake-up call registered\nclient: gopher, Good morning!\n"
	if got := out.String(); got != want {
		t.Errorf("output %q, want %q", got, want)
	}
}
