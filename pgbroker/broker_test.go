package pgbroker_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/internal/brokertest"
	"github.com/wsrpc/wsrpc/internal/services"
	"github.com/wsrpc/wsrpc/pgbroker"
)

// testOptions reconnect quickly and log nothing.
func testOptions() *pgbroker.Options {
	return &pgbroker.Options{
		Logger:    slog.New(slog.DiscardHandler),
		Reconnect: pgbroker.ReconnectOptions{InitialInterval: 20 * time.Millisecond, MaxInterval: 200 * time.Millisecond},
	}
}

// newBroker returns a Broker on url, closed when the test ends.
func newBroker(t testing.TB, url string, opts *pgbroker.Options) *pgbroker.Broker {
	t.Helper()
	if opts == nil {
		opts = testOptions()
	}
	b, err := pgbroker.New(brokertest.Ctx(t), url, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

// sink collects the messages of one subscription.
type sink struct {
	mu      sync.Mutex
	msgs    [][]byte
	changed chan struct{}
}

func newSink() *sink { return &sink{changed: make(chan struct{}, 1)} }

func (s *sink) fn(msg []byte) {
	s.mu.Lock()
	s.msgs = append(s.msgs, msg)
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// wait waits for n messages and returns them.
func (s *sink) wait(ctx context.Context, t testing.TB, n int) [][]byte {
	t.Helper()
	for {
		s.mu.Lock()
		got := append([][]byte(nil), s.msgs...)
		s.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-s.changed:
		case <-ctx.Done():
			t.Fatalf("%d of %d messages: %v", len(got), n, ctx.Err())
		}
	}
}

func subscribe(t testing.TB, b *pgbroker.Broker, channel string) *sink {
	t.Helper()
	s := newSink()
	stop, err := b.Subscribe(brokertest.Ctx(t), channel, s.fn)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", channel, err)
	}
	t.Cleanup(stop)
	return s
}

func publish(t testing.TB, b *pgbroker.Broker, channel string, msg []byte) {
	t.Helper()
	if err := b.Publish(brokertest.Ctx(t), channel, msg); err != nil {
		t.Fatalf("Publish(%q, %d bytes): %v", channel, len(msg), err)
	}
}

// connect opens a plain pgx connection, as another program would.
func connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(brokertest.Ctx(t), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// TestBroker runs every test on one PostgreSQL server, started once: the
// conformance suite first (whose outage tests stop and restart it), then
// PostgreSQL's own cases, the server killed last.
func TestBroker(t *testing.T) {
	s := services.Postgres(t)
	url := services.PostgresURL(s)
	t.Run("Conformance", func(t *testing.T) {
		brokertest.Run(t, brokertest.Harness{
			New:        func(t testing.TB) wsrpc.Broker { return newBroker(t, url, nil) },
			Stop:       s.Stop,
			Start:      s.Start,
			MaxMessage: pgbroker.MaxMessage,
		})
	})
	t.Run("SizeLimits", func(t *testing.T) { testSizeLimits(t, url) })
	t.Run("PubSubLimit", func(t *testing.T) { testPubSubLimit(t, url) })
	t.Run("Binary", func(t *testing.T) { testBinary(t, url) })
	t.Run("ForeignPrograms", func(t *testing.T) { testForeignPrograms(t, url) })
	t.Run("ChannelNames", func(t *testing.T) { testChannelNames(t, url) })
	t.Run("Encodings", func(t *testing.T) { testEncodings(t, url) })
	t.Run("Resubscribe", func(t *testing.T) { testResubscribe(t, url) })
	t.Run("NewFails", func(t *testing.T) { testNewFails(t, url) })
	t.Run("Pool", func(t *testing.T) { testPool(t, url) })
	t.Run("Closed", func(t *testing.T) { testClosed(t, url) })
	t.Run("HalfOpen", func(t *testing.T) { testHalfOpen(t, url, s.Addr) })
	t.Run("Killed", func(t *testing.T) { testKilled(t, s) })
}

// testSizeLimits: a text message of exactly MaxMessage bytes and a binary
// one of MaxBinaryMessage arrive; one byte more fails with
// ErrBrokerMessageTooLarge and sends nothing; and the server itself
// refuses the payload one byte over (the limit is PostgreSQL's, not ours).
func testSizeLimits(t *testing.T, url string) {
	ctx := brokertest.Ctx(t)
	b := newBroker(t, url, nil)
	s := subscribe(t, b, "size")
	text := bytes.Repeat([]byte("é"), pgbroker.MaxMessage/2) // 2 bytes each
	text = append(text, 'x')
	if len(text) != pgbroker.MaxMessage {
		t.Fatalf("test message of %d bytes", len(text))
	}
	bin := bytes.Repeat([]byte{0xff}, pgbroker.MaxBinaryMessage)
	for _, tc := range []struct {
		name string
		msg  []byte
	}{{"text", text}, {"binary", bin}} {
		over := append(bytes.Clone(tc.msg), tc.msg[len(tc.msg)-1])
		err := b.Publish(ctx, "size", over)
		if !errors.Is(err, wsrpc.ErrBrokerMessageTooLarge) {
			t.Errorf("%s message of %d bytes: Publish = %v, want ErrBrokerMessageTooLarge", tc.name, len(over), err)
		}
		publish(t, b, "size", tc.msg)
	}
	publish(t, b, "size", []byte("end"))
	got := s.wait(ctx, t, 3)
	if !bytes.Equal(got[0], text) || !bytes.Equal(got[1], bin) || string(got[2]) != "end" {
		t.Errorf("got messages of %d, %d and %d bytes, want %d, %d and the end marker", len(got[0]), len(got[1]), len(got[2]), len(text), len(bin))
	}
	if pgbroker.MaxMessage != 7999 || pgbroker.MaxBinaryMessage != 5998 {
		t.Errorf("MaxMessage %d, MaxBinaryMessage %d: the README says 7999 and 5998", pgbroker.MaxMessage, pgbroker.MaxBinaryMessage)
	}

	c := connect(t, url)
	if _, err := c.Exec(ctx, "SELECT pg_notify('size', $1)", strings.Repeat("x", pgbroker.MaxMessage)); err != nil {
		t.Errorf("the server refuses a payload of MaxMessage bytes: %v", err)
	}
	_, err := c.Exec(ctx, "SELECT pg_notify('size', $1)", strings.Repeat("x", pgbroker.MaxMessage+1))
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); !ok || pgErr.Code != "22023" {
		t.Errorf("the server takes a payload of MaxMessage+1 bytes: %v", err)
	}
}

// testBinary: messages that are no valid NOTIFY text (invalid UTF-8, NUL
// bytes, a leading 0x01, which the server refuses or which would be taken
// for an encoded one) arrive byte for byte, and so do text messages.
func testBinary(t *testing.T, url string) {
	ctx := brokertest.Ctx(t)
	b := newBroker(t, url, nil)
	s := subscribe(t, b, "binary")
	msgs := [][]byte{
		{0xff, 0xfe, 0x00, 0x01},
		[]byte("nul\x00inside"),
		[]byte("\x01starts with the tag"),
		[]byte("\x01"),
		[]byte("latin-1 caf\xe9"),
		[]byte("valid UTF-8: café 🎉"),
		{0x00},
		{},
	}
	for _, m := range msgs {
		publish(t, b, "binary", m)
	}
	got := s.wait(ctx, t, len(msgs))
	for i, m := range msgs {
		if !bytes.Equal(got[i], m) {
			t.Errorf("message %d arrived as %q, want %q", i, got[i], m)
		}
	}
}

// testForeignPrograms: a program that is not a Broker (a psql session, a
// trigger, the Python broadcaster) hears a Broker's text messages as they
// are, with LISTEN on the channel, and its NOTIFY reaches the Broker's
// subscribers.
func testForeignPrograms(t *testing.T, url string) {
	ctx := brokertest.Ctx(t)
	b := newBroker(t, url, nil)
	c := connect(t, url)
	if _, err := c.Exec(ctx, `LISTEN "EventNotifier"`); err != nil {
		t.Fatal(err)
	}
	msg := `{"notifier_id": "go", "topics": ["t"], "data": "café"}`
	publish(t, b, "EventNotifier", []byte(msg))
	n, err := c.WaitForNotification(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n.Channel != "EventNotifier" || n.Payload != msg {
		t.Errorf("a LISTEN heard %q on %q, want %q on EventNotifier", n.Payload, n.Channel, msg)
	}

	s := subscribe(t, b, "EventNotifier")
	py := `{"notifier_id": "python", "topics": ["t"], "data": {"x": "'quoted' $1"}}`
	if _, err := c.Exec(ctx, "SELECT pg_notify($1, $2)", "EventNotifier", py); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, `NOTIFY "EventNotifier", 'from psql'`); err != nil {
		t.Fatal(err)
	}
	got := s.wait(ctx, t, 2)
	if string(got[0]) != py || string(got[1]) != "from psql" {
		t.Errorf("the subscription heard %q, want %q and %q", got, py, "from psql")
	}
}

// testChannelNames: channel names that are no valid PostgreSQL identifier
// as they are (too long, empty, not UTF-8, with NUL) work, each on its own
// channel, even two long names that share their first 63 bytes; so do
// names that need quoting, and case is kept.
func testChannelNames(t *testing.T, url string) {
	ctx := brokertest.Ctx(t)
	long := strings.Repeat("c", 63)
	names := []string{
		long,                    // the longest that goes as it is
		long + "1",              // one byte over
		long + "2",              // shares 63 bytes with the one before
		strings.Repeat("日", 40), // 120 bytes
		"",
		"\xff\xfe",
		"nul\x00",
		`quote"d ; DROP TABLE x; --`,
		"Orders",
		"orders",
		"with space.and.dots",
		"$1",
	}
	sub, pub := newBroker(t, url, nil), newBroker(t, url, nil)
	sinks := make([]*sink, len(names))
	for i, name := range names {
		sinks[i] = subscribe(t, sub, name)
	}
	for i, name := range names {
		publish(t, pub, name, []byte{byte('a' + i)})
	}
	for i, name := range names {
		publish(t, pub, name, []byte("end"))
		got := sinks[i].wait(ctx, t, 2)
		if len(got) != 2 || !bytes.Equal(got[0], []byte{byte('a' + i)}) {
			t.Errorf("channel %q heard %q, want only its own message and the end", name, got)
		}
	}
	for _, name := range names {
		pg := pgbroker.ChannelName(name)
		if len(pg) == 0 || len(pg) > 63 || pg != pgbroker.ChannelName(name) {
			t.Errorf("ChannelName(%q) = %q", name, pg)
		}
		if (pg == name) != (name != "" && len(name) <= 63 && !strings.ContainsRune(name, 0) && !strings.Contains(name, "\xff")) {
			t.Errorf("ChannelName(%q) = %q", name, pg)
		}
	}
	if got, want := pgbroker.ChannelName(long + "1")[:31], strings.Repeat("c", 30)+"#"; got != want {
		t.Errorf("ChannelName of a long name begins %q, want %q", got, want)
	}
	if got := pgbroker.ChannelName(strings.Repeat("日", 40)); !strings.HasPrefix(got, strings.Repeat("日", 10)+"#") {
		t.Errorf("ChannelName cuts a long name's characters: %q", got)
	}
}

// testEncodings: in a database whose encoding is not UTF8, messages
// arrive byte for byte. In LATIN1, those that are not ASCII (which the
// server would convert, or refuse) go in base64 and ASCII ones as they
// are; in SQL_ASCII, UTF-8 text goes as it is.
func testEncodings(t *testing.T, url string) {
	ctx := brokertest.Ctx(t)
	c := connect(t, url)
	for _, tc := range []struct{ enc, raw string }{{"LATIN1", "plain ASCII"}, {"SQL_ASCII", "日本 🎉"}} {
		t.Run(tc.enc, func(t *testing.T) {
			db := strings.ToLower(tc.enc)
			if _, err := c.Exec(ctx, "CREATE DATABASE "+db+" ENCODING '"+tc.enc+"' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"); err != nil {
				t.Fatal(err)
			}
			dbURL := strings.Replace(url, "/postgres?", "/"+db+"?", 1)
			b := newBroker(t, dbURL, nil)
			s := subscribe(t, b, "enc")
			listener := connect(t, dbURL)
			if _, err := listener.Exec(ctx, "LISTEN enc"); err != nil {
				t.Fatal(err)
			}
			msgs := []string{tc.raw, "plain ASCII", "café", "日本 🎉", "\xff\x00"}
			for _, m := range msgs {
				publish(t, b, "enc", []byte(m))
			}
			got := s.wait(ctx, t, len(msgs))
			for i, m := range msgs {
				if string(got[i]) != m {
					t.Errorf("message %d arrived as %q, want %q", i, got[i], m)
				}
			}
			if n, err := listener.WaitForNotification(ctx); err != nil || n.Payload != tc.raw {
				t.Errorf("a LISTEN heard %v (%v), want %q as it is", n, err, tc.raw)
			}
		})
	}
}

// testResubscribe: subscriptions of one channel come and go (its LISTEN
// shared, UNLISTENed with the last and LISTENed again): each hears what is
// published while it is subscribed.
func testResubscribe(t *testing.T, url string) {
	ctx := brokertest.Ctx(t)
	b := newBroker(t, url, nil)
	for round := range 5 {
		s1, s2 := newSink(), newSink()
		stop1, err := b.Subscribe(ctx, "again", s1.fn)
		if err != nil {
			t.Fatal(err)
		}
		stop2, err := b.Subscribe(ctx, "again", s2.fn)
		if err != nil {
			t.Fatal(err)
		}
		publish(t, b, "again", []byte{byte(round)})
		for _, s := range []*sink{s1, s2} {
			if got := s.wait(ctx, t, 1); got[0][0] != byte(round) {
				t.Fatalf("round %d: heard %v", round, got)
			}
		}
		stop1()
		publish(t, b, "again", []byte("only 2"))
		s2.wait(ctx, t, 2)
		stop2()
	}
}

// testNewFails: New fails on a server that is not there (with
// ErrBrokerUnavailable), on a database that does not exist (the server's
// answer, not ErrBrokerUnavailable), on a bad URL, and on bad options.
func testNewFails(t *testing.T, url string) {
	ctx := brokertest.Ctx(t)
	nobody := "postgres://postgres@127.0.0.1:" + strconv.Itoa(services.FreePort(t)) + "/postgres?sslmode=disable"
	if _, err := pgbroker.New(ctx, nobody, testOptions()); !errors.Is(err, wsrpc.ErrBrokerUnavailable) {
		t.Errorf("New on a closed port = %v, want ErrBrokerUnavailable", err)
	}
	_, err := pgbroker.New(ctx, strings.Replace(url, "/postgres?", "/nosuchdb?", 1), testOptions())
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); !ok || pgErr.Code != "3D000" || errors.Is(err, wsrpc.ErrBrokerUnavailable) {
		t.Errorf("New on a missing database = %v, want the server's 3D000", err)
	}
	if _, err := pgbroker.New(ctx, "postgres://[bad", testOptions()); err == nil || errors.Is(err, wsrpc.ErrBrokerUnavailable) {
		t.Errorf("New on a bad URL = %v", err)
	}
	if _, err := pgbroker.New(ctx, "", testOptions()); err == nil {
		t.Error("New with no URL and no pool succeeded")
	}
	bad := &pgbroker.Options{Timeout: -1, Reconnect: pgbroker.ReconnectOptions{InitialInterval: time.Second, MaxInterval: time.Millisecond}}
	_, err = pgbroker.New(ctx, url, bad)
	if err == nil || !strings.Contains(err.Error(), "Timeout") || !strings.Contains(err.Error(), "InitialInterval must not exceed") {
		t.Errorf("New with bad options = %v, want both problems", err)
	}
}

// replaceHost returns url with its host:port from replaced by to.
func replaceHost(url, from, to string) string { return strings.Replace(url, from, to, 1) }
