package main

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
)

// lines is an io.Writer that hands each line written to a channel.
type lines struct {
	mu   sync.Mutex
	part string
	ch   chan string
}

func newLines() *lines { return &lines{ch: make(chan string, 100)} }

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.part += string(p)
	for {
		line, rest, ok := strings.Cut(l.part, "\n")
		if !ok {
			return len(p), nil
		}
		l.ch <- line
		l.part = rest
	}
}

// next returns the next line, failing the test after 20 s.
func (l *lines) next(t *testing.T, what string) string {
	t.Helper()
	select {
	case s := <-l.ch:
		return s
	case <-time.After(20 * time.Second):
		t.Fatalf("no line: %s", what)
		return ""
	}
}

// subRun is a wsrpc sub running in the test.
type subRun struct {
	out    *lines
	stderr *lockedBuffer
	code   chan int
	cancel context.CancelFunc
}

func startSub(t *testing.T, args ...string) *subRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &subRun{out: newLines(), stderr: new(lockedBuffer), code: make(chan int, 1), cancel: cancel}
	go func() { s.code <- run(ctx, append([]string{"sub"}, args...), nil, s.out, s.stderr) }()
	t.Cleanup(func() {
		cancel()
		s.wait()
	})
	return s
}

// wait returns sub's exit status, once it exited.
func (s *subRun) wait() int {
	c := <-s.code
	s.code <- c // for the next wait
	return c
}

type subLine struct {
	Topic string          `json:"topic"`
	Data  json.RawMessage `json:"data"`
}

func decodeLine(t *testing.T, line string) subLine {
	t.Helper()
	var l subLine
	if err := json.Unmarshal([]byte(line), &l); err != nil {
		t.Fatalf("sub printed %q, not a JSON line: %v", line, err)
	}
	return l
}

// TestSubPub: wsrpc sub against wsrpc serve prints the time serve
// publishes, and what wsrpc pub publishes (JSON data as JSON, other data as
// a string, none as null), one JSON line per event, and exits 0 after
// --count events; pub exits 0 once the server answered.
func TestSubPub(t *testing.T) {
	t.Parallel()
	s := startServe(t, func(d *demo) { d.tick = 20 * time.Millisecond })
	pubsubURL := strings.TrimSuffix(s.url, "/ws") + "/pubsub"

	timeSub := startSub(t, "--count", "2", pubsubURL, "time")
	for range 2 {
		l := decodeLine(t, timeSub.out.next(t, "the time"))
		var ts string
		if l.Topic != "time" || json.Unmarshal(l.Data, &ts) != nil {
			t.Fatalf("sub printed %+v, want the time", l)
		}
		if _, err := time.Parse(time.RFC3339, ts); err != nil {
			t.Errorf("the time %q is not RFC 3339: %v", ts, err)
		}
	}
	if c := timeSub.wait(); c != exitOK {
		t.Errorf("sub --count 2 exited with %d; stderr %s", c, timeSub.stderr.String())
	}

	sub := startSub(t, "--count", "3", pubsubURL+"/reader", "orders", "news")
	waitSubscribed(t, s, "news")
	for _, args := range [][]string{
		{"pub", pubsubURL, "orders", `{"id": 7, "items": ["tea", "café"]}`},
		{"pub", pubsubURL, "news", "hello world"},
		{"pub", "--no-sync", strings.TrimPrefix(pubsubURL, "ws://"), "news"},
	} {
		if r := runCmd(t, "", args...); r.code != exitOK || r.stdout != "" {
			t.Fatalf("%v: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
		}
	}
	want := []string{`{"topic":"orders","data":{"id":7,"items":["tea","café"]}}`, `{"topic":"news","data":"hello world"}`, `{"topic":"news","data":null}`}
	for _, w := range want {
		if got := sub.out.next(t, "an event"); got != w {
			t.Errorf("sub printed %s, want %s", got, w)
		}
	}
	if c := sub.wait(); c != exitOK {
		t.Errorf("sub exited with %d; stderr %s", c, sub.stderr.String())
	}
}

// waitSubscribed waits until the demo has a subscription to topic.
func waitSubscribed(t *testing.T, s *serveRun, topic string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := runCmd(t, "", "call", s.url, "echo", "text=x") // the server is up
		if r.code != exitOK {
			t.Fatalf("serve: %s", r.stderr)
		}
		if s.demo != nil && s.demo.ps.Topics()[topic] > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no subscription to %q", topic)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSubInterrupted: sub exits 0 on SIGINT; pub and sub fail with 2
// where no server listens.
func TestSubInterrupted(t *testing.T) {
	t.Parallel()
	s := startServe(t, nil)
	sub := startSub(t, strings.TrimSuffix(s.url, "/ws")+"/pubsub", "quiet")
	waitSubscribed(t, s, "quiet")
	sub.cancel()
	if c := sub.wait(); c != exitOK {
		t.Errorf("sub exited with %d on interrupt; stderr %s", c, sub.stderr.String())
	}
	dead := deadURL(t)
	for _, args := range [][]string{{"pub", "--timeout", "5s", dead, "t", "1"}, {"sub", "--timeout", "2s", dead, "t"}} {
		if r := runCmd(t, "", args...); r.code != exitFail || r.stderr == "" {
			t.Errorf("%v: exit %d, stderr %q; want %d and why", args, r.code, r.stderr, exitFail)
		}
	}
}
