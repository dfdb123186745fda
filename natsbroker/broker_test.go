package natsbroker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/internal/brokertest"
	"github.com/wsrpc/wsrpc/internal/services"
	"github.com/wsrpc/wsrpc/natsbroker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newBroker returns a Broker on srv, closed when the test ends.
func newBroker(t testing.TB, srv *services.Server, opts *natsbroker.Options) *natsbroker.Broker {
	t.Helper()
	if opts == nil {
		opts = &natsbroker.Options{}
	}
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	b, err := natsbroker.New(brokertest.Ctx(t), srv.URL("nats", ""), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// TestConformance runs the wsrpc.Broker conformance suite against a real
// nats-server: order, channels, stop, bytes, its max_payload, pub/sub on
// three nodes, and the server stopped and started again.
func TestConformance(t *testing.T) {
	srv := services.NATS(t)
	probe := newBroker(t, srv, nil)
	brokertest.Run(t, brokertest.Harness{
		New:        func(t testing.TB) wsrpc.Broker { return newBroker(t, srv, nil) },
		Stop:       srv.Stop,
		Start:      srv.Start,
		MaxMessage: probe.MaxPayload(),
	})
}

// sink collects the messages of one subscription.
type sink struct {
	mu   sync.Mutex
	msgs []string
	ch   chan struct{}
}

func newSink() *sink { return &sink{ch: make(chan struct{}, 1)} }

func (s *sink) fn(msg []byte) {
	s.mu.Lock()
	s.msgs = append(s.msgs, string(msg))
	s.mu.Unlock()
	select {
	case s.ch <- struct{}{}:
	default:
	}
}

func (s *sink) get() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.msgs...)
}

// waitFor waits until the last message is last.
func (s *sink) waitFor(ctx context.Context, t testing.TB, last string) []string {
	t.Helper()
	for {
		if got := s.get(); len(got) > 0 && got[len(got)-1] == last {
			return got
		}
		select {
		case <-s.ch:
		case <-ctx.Done():
			t.Fatalf("waiting for %q: got %q: %v", last, s.get(), ctx.Err())
		}
	}
}

func subscribe(t testing.TB, b *natsbroker.Broker, channel string, fn func([]byte)) {
	t.Helper()
	stop, err := b.Subscribe(brokertest.Ctx(t), channel, fn)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", channel, err)
	}
	t.Cleanup(stop)
}

// TestSubject: the mapping of channel names to subjects, and channels of
// every kind carried by a real server, each only to its own subscribers.
func TestSubject(t *testing.T) {
	for _, c := range []struct{ channel, subject string }{
		{"EventNotifier", "EventNotifier"},
		{"wsrpc.node.0af3c2", "wsrpc.node.0af3c2"},
		{"a b", "a%20b"},
		{"a..b", "a.%2Eb"},
		{".x", "%2Ex"},
		{"x.", "x%2E"},
		{".", "%2E"},
		{"*", "%2A"},
		{"a.>", "a.%3E"},
		{"100%", "100%25"},
		{"café", "caf%C3%A9"},
		{"tab\there", "tab%09here"},
		{"$SYS.x", "%24SYS.x"},
	} {
		got, err := natsbroker.Subject(c.channel)
		if err != nil || got != c.subject {
			t.Errorf("Subject(%q) = %q, %v; want %q", c.channel, got, err, c.subject)
		}
	}
	if _, err := natsbroker.Subject(""); !errors.Is(err, natsbroker.ErrChannel) {
		t.Errorf("Subject(\"\") = %v, want ErrChannel", err)
	}

	srv := services.NATS(t)
	ctx := brokertest.Ctx(t)
	sub, pub := newBroker(t, srv, nil), newBroker(t, srv, nil)
	channels := []string{"a.b", "a b", "a.*", "a.>", "a..b", "a.%2Eb", ".a.b", "a.b.", "%", "café", "EventNotifier"}
	sinks := map[string]*sink{}
	for _, ch := range channels {
		sinks[ch] = newSink()
		subscribe(t, sub, ch, sinks[ch].fn)
	}
	for _, ch := range channels {
		if err := pub.Publish(ctx, ch, []byte("to "+ch)); err != nil {
			t.Fatalf("Publish(%q): %v", ch, err)
		}
	}
	for _, ch := range channels {
		if err := pub.Publish(ctx, ch, []byte("end")); err != nil {
			t.Fatal(err)
		}
	}
	for _, ch := range channels {
		// "a.*" and "a.>" are no wildcards: each hears its own message only.
		if got := sinks[ch].waitFor(ctx, t, "end"); len(got) != 2 || got[0] != "to "+ch {
			t.Errorf("channel %q heard %q, want only its own message", ch, got)
		}
	}

	if err := pub.Publish(ctx, "", []byte("x")); !errors.Is(err, natsbroker.ErrChannel) {
		t.Errorf("Publish on an empty channel = %v, want ErrChannel", err)
	}
	long := strings.Repeat("x", natsbroker.MaxSubject+1)
	if err := pub.Publish(ctx, long, []byte("x")); !errors.Is(err, natsbroker.ErrChannel) {
		t.Errorf("Publish on a %d-byte channel = %v, want ErrChannel", len(long), err)
	}
	if _, err := sub.Subscribe(ctx, long, func([]byte) {}); !errors.Is(err, natsbroker.ErrChannel) {
		t.Errorf("Subscribe to a %d-byte channel = %v, want ErrChannel", len(long), err)
	}
	if st := pub.Conn().Status(); st != nats.CONNECTED {
		t.Errorf("after the refused channels the link is %v", st)
	}
}

// TestSubjectPrefix: brokers with different prefixes on one server do not
// hear each other; a prefix that is no subject prefix is refused.
func TestSubjectPrefix(t *testing.T) {
	srv := services.NATS(t)
	ctx := brokertest.Ctx(t)
	a1 := newBroker(t, srv, &natsbroker.Options{SubjectPrefix: "app1."})
	a2 := newBroker(t, srv, &natsbroker.Options{SubjectPrefix: "app2."})
	plain := newBroker(t, srv, nil)
	s1, s2, raw := newSink(), newSink(), newSink()
	subscribe(t, a1, "EventNotifier", s1.fn)
	subscribe(t, a2, "EventNotifier", s2.fn)
	subscribe(t, plain, "app1.EventNotifier", raw.fn)
	for _, m := range []string{"one", "end"} {
		if err := a1.Publish(ctx, "EventNotifier", []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a2.Publish(ctx, "EventNotifier", []byte("end")); err != nil {
		t.Fatal(err)
	}
	if got := s1.waitFor(ctx, t, "end"); len(got) != 2 {
		t.Errorf("app1 heard %q", got)
	}
	if got := s2.waitFor(ctx, t, "end"); len(got) != 1 {
		t.Errorf("app2 heard %q, want only its own end", got)
	}
	if got := raw.waitFor(ctx, t, "end"); len(got) != 2 {
		t.Errorf("the subject app1.EventNotifier heard %q", got)
	}
	for _, p := range []string{"app1", ".app.", "a b.", "a..", "*."} {
		if _, err := natsbroker.New(ctx, srv.URL("nats", ""), &natsbroker.Options{SubjectPrefix: p}); err == nil {
			t.Errorf("New with SubjectPrefix %q: no error", p)
		}
	}
}

// TestMaxPayload: a message over the server's max_payload fails with
// ErrBrokerMessageTooLarge and nats.ErrMaxPayload, is not sent, and
// leaves the link up (a server that got it would close the connection).
func TestMaxPayload(t *testing.T) {
	srv := services.NATS(t)
	ctx := brokertest.Ctx(t)
	sub, pub := newBroker(t, srv, nil), newBroker(t, srv, nil)
	if pub.MaxPayload() != 1<<20 {
		t.Errorf("MaxPayload() = %d, want nats-server's default 1 MiB", pub.MaxPayload())
	}
	w := watchAll(t, pub)
	s := newSink()
	subscribe(t, sub, "big", s.fn)
	err := pub.Publish(ctx, "big", make([]byte, pub.MaxPayload()+1))
	if !errors.Is(err, wsrpc.ErrBrokerMessageTooLarge) || !errors.Is(err, nats.ErrMaxPayload) {
		t.Fatalf("Publish over max_payload = %v, want ErrBrokerMessageTooLarge and nats.ErrMaxPayload", err)
	}
	if err := pub.Publish(ctx, "big", []byte("end")); err != nil {
		t.Fatal(err)
	}
	if got := s.waitFor(ctx, t, "end"); len(got) != 1 {
		t.Errorf("got %d messages, want only the end marker", len(got))
	}
	if st := pub.Conn().Status(); st != nats.CONNECTED || len(w.get()) != 0 {
		t.Errorf("link %v, watcher heard %v: want connected, nothing", st, w.get())
	}
}

// reports records what a Broker's watcher hears.
type reports struct {
	mu   sync.Mutex
	errs []error
	ch   chan struct{}
}

func watchAll(t testing.TB, b *natsbroker.Broker) *reports {
	r := &reports{ch: make(chan struct{}, 1)}
	t.Cleanup(b.Watch(func(err error) {
		r.mu.Lock()
		r.errs = append(r.errs, err)
		r.mu.Unlock()
		select {
		case r.ch <- struct{}{}:
		default:
		}
	}))
	return r
}

func (r *reports) get() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

// wait waits until there are n reports and returns the nth.
func (r *reports) wait(ctx context.Context, t testing.TB, n int) error {
	t.Helper()
	for {
		if got := r.get(); len(got) >= n {
			return got[n-1]
		}
		select {
		case <-r.ch:
		case <-ctx.Done():
			t.Fatalf("waiting for report %d: have %v: %v", n, r.get(), ctx.Err())
		}
	}
}

// TestServerKilled: nats-server dies (SIGKILL) and comes back on the same
// port. The watchers hear the loss, then nil; Publish fails while it is
// down, and what it refused never arrives (nothing is buffered); the
// subscriptions made before hear what is published after, with no new
// Subscribe.
func TestServerKilled(t *testing.T) {
	srv := services.NATS(t)
	ctx := brokertest.Ctx(t)
	sub, pub := newBroker(t, srv, nil), newBroker(t, srv, nil)
	ws, wp := watchAll(t, sub), watchAll(t, pub)
	s := newSink()
	subscribe(t, sub, "EventNotifier", s.fn)
	if err := pub.Publish(ctx, "EventNotifier", []byte("before")); err != nil {
		t.Fatal(err)
	}
	s.waitFor(ctx, t, "before")

	srv.Kill()
	if err := ws.wait(ctx, t, 1); !errors.Is(err, wsrpc.ErrBrokerUnavailable) {
		t.Fatalf("subscriber's watcher: %v, want ErrBrokerUnavailable", err)
	}
	if err := wp.wait(ctx, t, 1); !errors.Is(err, wsrpc.ErrBrokerUnavailable) {
		t.Fatalf("publisher's watcher: %v, want ErrBrokerUnavailable", err)
	}
	for i := range 3 {
		if err := pub.Publish(ctx, "EventNotifier", fmt.Appendf(nil, "lost %d", i)); !errors.Is(err, wsrpc.ErrBrokerUnavailable) {
			t.Fatalf("Publish with the server dead = %v, want ErrBrokerUnavailable", err)
		}
	}
	if _, err := sub.Subscribe(ctx, "other", func([]byte) {}); !errors.Is(err, wsrpc.ErrBrokerUnavailable) {
		t.Errorf("Subscribe with the server dead = %v, want ErrBrokerUnavailable", err)
	}

	srv.Start()
	if err := ws.wait(ctx, t, 2); err != nil {
		t.Fatalf("subscriber's watcher after the restart: %v, want nil", err)
	}
	if err := wp.wait(ctx, t, 2); err != nil {
		t.Fatalf("publisher's watcher after the restart: %v, want nil", err)
	}
	if err := pub.Publish(ctx, "EventNotifier", []byte("after")); err != nil {
		t.Fatalf("Publish once the server is back: %v", err)
	}
	if got := s.waitFor(ctx, t, "after"); len(got) != 2 {
		t.Errorf("subscriber got %q, want before and after (a refused message buffered and sent?)", got)
	}
	if n := len(ws.get()) + len(wp.get()); n != 4 {
		t.Errorf("watchers heard %v and %v, want one loss and one recovery each", ws.get(), wp.get())
	}
}

// TestNewUnreachable: New fails with ErrBrokerUnavailable when nothing
// listens, and within its context when a server accepts but never
// answers (nats.go's own timeout set far longer).
func TestNewUnreachable(t *testing.T) {
	port := services.FreePort(t)
	_, err := natsbroker.New(brokertest.Ctx(t), fmt.Sprintf("nats://127.0.0.1:%d", port), &natsbroker.Options{Logger: quiet})
	if !errors.Is(err, wsrpc.ErrBrokerUnavailable) || !errors.Is(err, nats.ErrNoServers) {
		t.Errorf("New with nothing listening = %v, want ErrBrokerUnavailable and nats.ErrNoServers", err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer l.Close()
	wg.Go(func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // silent: no INFO
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = natsbroker.New(ctx, "nats://"+l.Addr().String(), &natsbroker.Options{
		Logger: quiet,
		NATS:   []nats.Option{nats.Timeout(10 * time.Minute)},
	})
	if !errors.Is(err, wsrpc.ErrBrokerUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("New against a silent server = %v, want ErrBrokerUnavailable and DeadlineExceeded", err)
	}
	pw := "hunter2"
	if _, err := natsbroker.New(brokertest.Ctx(t), fmt.Sprintf("nats://u:%s@127.0.0.1:%d", pw, port), &natsbroker.Options{Logger: quiet}); err == nil || strings.Contains(err.Error(), pw) {
		t.Errorf("New's error %v: want one, without the password", err)
	}
}

// TestNewConn: a Broker on the caller's connection made with NATSOptions;
// Close leaves it open. A connection that would buffer while disconnected
// is refused.
func TestNewConn(t *testing.T) {
	srv := services.NATS(t)
	ctx := brokertest.Ctx(t)
	nc, err := nats.Connect(srv.URL("nats", ""), natsbroker.NATSOptions(nil)...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	b1, err := natsbroker.NewConn(nc, &natsbroker.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	b2, err := natsbroker.NewConn(nc, &natsbroker.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	s := newSink()
	stop, err := b2.Subscribe(ctx, "shared", s.fn)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if err := b1.Publish(ctx, "shared", []byte("one")); err != nil {
		t.Fatal(err)
	}
	s.waitFor(ctx, t, "one")
	b1.Close()
	if err := b1.Publish(ctx, "shared", []byte("x")); !errors.Is(err, natsbroker.ErrClosed) {
		t.Errorf("Publish after Close = %v, want ErrClosed", err)
	}
	if nc.IsClosed() {
		t.Fatal("Close closed the caller's connection")
	}
	if err := b2.Publish(ctx, "shared", []byte("two")); err != nil {
		t.Fatal(err)
	}
	s.waitFor(ctx, t, "two")
	b2.Close()

	buffering, err := nats.Connect(srv.URL("nats", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer buffering.Close()
	if _, err := natsbroker.NewConn(buffering, nil); !errors.Is(err, natsbroker.ErrConnOptions) {
		t.Errorf("NewConn on a buffering connection = %v, want ErrConnOptions", err)
	}
}

// logCatcher is a slog.Handler that signals each record whose message
// holds want.
type logCatcher struct {
	slog.Handler
	want string
	ch   chan slog.Record
}

func (l *logCatcher) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, l.want) {
		select {
		case l.ch <- r:
		default:
		}
	}
	return nil
}

// TestSlowConsumer: a subscription whose fn is too slow drops what is
// over its pending limit, logs it, and counts it in Dropped: every
// message is either delivered, in order, or counted.
func TestSlowConsumer(t *testing.T) {
	srv := services.NATS(t)
	ctx := brokertest.Ctx(t)
	lc := &logCatcher{Handler: slog.NewTextHandler(io.Discard, nil), want: "slow subscription", ch: make(chan slog.Record, 1)}
	sub := newBroker(t, srv, &natsbroker.Options{PendingMessages: 4, Logger: slog.New(lc)})
	pub := newBroker(t, srv, nil)
	release := make(chan struct{})
	s := newSink()
	subscribe(t, sub, "slow", func(msg []byte) {
		if string(msg) == "0" {
			<-release
		}
		s.fn(msg)
	})
	const n = 50
	for i := range n {
		if err := pub.Publish(ctx, "slow", fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-lc.ch:
	case <-ctx.Done():
		t.Fatal("no slow-subscription log")
	}
	close(release)
	// An end marker may itself be dropped until the subscription caught
	// up: publish one after another until one arrives; every earlier
	// message has then been delivered or dropped.
	ends := 0
	for arrived := false; !arrived; {
		end := fmt.Sprintf("end %d", ends)
		if err := pub.Publish(ctx, "slow", []byte(end)); err != nil {
			t.Fatal(err)
		}
		ends++
		wait := time.After(100 * time.Millisecond)
		for !arrived {
			if got := s.get(); len(got) > 0 && got[len(got)-1] == end {
				arrived = true
				break
			}
			select {
			case <-s.ch:
				continue
			case <-wait:
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			}
			break
		}
	}
	var delivered []string
	endsDelivered := 0
	for _, m := range s.get() {
		if strings.HasPrefix(m, "end") {
			endsDelivered++
		} else {
			delivered = append(delivered, m)
		}
	}
	dropped := sub.Dropped()
	if dropped == 0 || uint64(len(delivered)+endsDelivered)+dropped != uint64(n+ends) {
		t.Errorf("delivered %d and %d of %d end markers, dropped %d: want some dropped, %d in all", len(delivered), endsDelivered, ends, dropped, n+ends)
	}
	prev := -1
	for _, m := range delivered {
		var i int
		if _, err := fmt.Sscan(m, &i); err != nil {
			t.Fatalf("message %q: %v", m, err)
		}
		if i <= prev {
			t.Fatalf("delivered out of order: %v", delivered)
		}
		prev = i
	}
}

// TestOptions: invalid options are refused, all at once.
func TestOptions(t *testing.T) {
	_, err := natsbroker.New(brokertest.Ctx(t), "nats://127.0.0.1:1", &natsbroker.Options{ReconnectWait: -1, Timeout: -1, SubjectPrefix: "x"})
	for _, want := range []string{"ReconnectWait", "Timeout", "SubjectPrefix"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New's error %v does not name %s", err, want)
		}
	}
}

// TestStopWaitsForFn: stop returns only once a running fn has returned.
func TestStopWaitsForFn(t *testing.T) {
	srv := services.NATS(t)
	ctx := brokertest.Ctx(t)
	b := newBroker(t, srv, nil)
	entered, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	returned := false
	stop, err := b.Subscribe(ctx, "stop", func([]byte) {
		close(entered)
		<-release
		mu.Lock()
		returned = true
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, "stop", []byte("x")); err != nil {
		t.Fatal(err)
	}
	<-entered
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("stop returned while fn was running")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-stopped
	mu.Lock()
	defer mu.Unlock()
	if !returned {
		t.Error("stop returned before fn")
	}
}
