package wsrpc

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"path"
	"reflect"
	"strings"
	"testing"
	"time"
)

// leaves returns the errors that err joins (errors.Join, nested or not),
// or err alone.
func leaves(err error) []error {
	if err == nil {
		return nil
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, leaves(e)...)
	}
	return out
}

// dialInvalid dials a port nobody serves with opts, which must be refused
// before any connect try.
func dialInvalid(t *testing.T, opts *DialOptions) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctxT(t), 5*time.Second)
	defer cancel()
	cl, err := Dial(ctx, "ws://127.0.0.1:1/ws", opts)
	if err == nil {
		cl.Close()
		t.Fatal("Dial succeeded")
	}
	if ctx.Err() != nil {
		t.Fatalf("Dial tried to connect: %v", err)
	}
	return err
}

// TestInvalidConnOptionsSameErrorBothSides checks that NewServer and Dial
// refuse the same invalid ConnOptions with the same error, one that names
// every invalid field.
func TestInvalidConnOptionsSameErrorBothSides(t *testing.T) {
	tests := []struct {
		name   string
		opts   ConnOptions
		fields []string // named by the error, in this order
	}{
		{"SendQueue", ConnOptions{SendQueue: -1}, []string{"SendQueue"}},
		{"MaxConcurrentCalls", ConnOptions{MaxConcurrentCalls: -5}, []string{"MaxConcurrentCalls"}},
		{"KeepAlive.Timeout", ConnOptions{KeepAlive: KeepAlive{Timeout: -time.Second}}, []string{"KeepAlive.Timeout"}},
		{"KeepAlive.Timeout with keep-alive off", ConnOptions{KeepAlive: KeepAlive{Interval: -1, Timeout: -1}}, []string{"KeepAlive.Timeout"}},
		{"all", ConnOptions{SendQueue: -1, MaxConcurrentCalls: -1, KeepAlive: KeepAlive{Timeout: -1}},
			[]string{"SendQueue", "MaxConcurrentCalls", "KeepAlive.Timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Logger = quiet()
			srv, serr := NewServer(nil, &ServerOptions{ConnOptions: tt.opts})
			if serr == nil {
				srv.Close()
				t.Fatal("NewServer accepted the options")
			}
			if srv != nil {
				t.Error("NewServer returned a Server with its error")
			}
			cerr := dialInvalid(t, &DialOptions{ConnOptions: tt.opts})
			if serr.Error() != cerr.Error() {
				t.Errorf("the two sides disagree:\nNewServer: %v\nDial:      %v", serr, cerr)
			}
			_, want := tt.opts.withDefaults()
			if serr.Error() != want.Error() {
				t.Errorf("NewServer: %v\nwant ConnOptions' own error: %v", serr, want)
			}
			for side, err := range map[string]error{"NewServer": serr, "Dial": cerr} {
				got := leaves(err)
				if len(got) != len(tt.fields) {
					t.Errorf("%s reports %d problems, want %d: %v", side, len(got), len(tt.fields), err)
					continue
				}
				for i, f := range tt.fields {
					if !strings.Contains(got[i].Error(), f) {
						t.Errorf("%s: problem %d is %q, want one about %s", side, i, got[i], f)
					}
				}
			}
		})
	}
}

// TestConnOptionsDefaultsSameBothSides checks that a server and a client
// given the same ConnOptions run their connections with the same options:
// the documented defaults for zero fields, negative values kept (they
// disable), and the rest as given.
func TestConnOptionsDefaultsSameBothSides(t *testing.T) {
	logger := quiet()
	onError := func(*Conn, error) {}
	set := ConnOptions{
		OnError:            onError,
		Logger:             logger,
		CallTimeout:        time.Minute,
		KeepAlive:          KeepAlive{Interval: time.Hour, Timeout: time.Second},
		BinaryFrames:       true,
		MaxMessageSize:     1 << 10,
		SendQueue:          3,
		SendQueueBytes:     1 << 12,
		WriteTimeout:       time.Minute,
		CloseTimeout:       time.Second,
		MaxConcurrentCalls: 7,
		MaxCallBytes:       1 << 14,
		SendErrorDetails:   true,
		Observer:           NopObserver{},
	}
	tests := []struct {
		name string
		opts ConnOptions
		want ConnOptions
	}{
		{"zero", ConnOptions{Logger: logger}, ConnOptions{
			Logger:             logger,
			CallTimeout:        DefaultCallTimeout,
			KeepAlive:          KeepAlive{Interval: DefaultKeepAliveInterval, Timeout: DefaultKeepAliveInterval},
			MaxMessageSize:     DefaultMaxMessageSize,
			SendQueue:          DefaultSendQueue,
			SendQueueBytes:     DefaultSendQueueBytes,
			WriteTimeout:       DefaultWriteTimeout,
			CloseTimeout:       DefaultCloseTimeout,
			MaxConcurrentCalls: DefaultMaxConcurrentCalls,
			MaxCallBytes:       DefaultMaxCallBytes,
		}},
		{"negative", ConnOptions{
			Logger:         logger,
			CallTimeout:    -1,
			KeepAlive:      KeepAlive{Interval: -1},
			MaxMessageSize: -1,
			SendQueueBytes: -1,
			WriteTimeout:   -1,
			CloseTimeout:   -1,
			MaxCallBytes:   -1,
		}, ConnOptions{
			Logger:             logger,
			CallTimeout:        -1,
			KeepAlive:          KeepAlive{Interval: -1},
			MaxMessageSize:     -1,
			SendQueue:          DefaultSendQueue,
			SendQueueBytes:     -1,
			WriteTimeout:       -1,
			CloseTimeout:       -1,
			MaxConcurrentCalls: DefaultMaxConcurrentCalls,
			MaxCallBytes:       -1,
		}},
		{"set", set, set}, // every field set: kept as it is
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, url := testServer(t, utilMux(), &ServerOptions{ConnOptions: tt.opts})
			cl := testDial(t, url, &DialOptions{ConnOptions: tt.opts})
			sc := serverConn(t, srv)
			for side, got := range map[string]ConnOptions{
				"server": srv.cfg.ConnOptions, "server's connection": sc.cfg.ConnOptions,
				"client": cl.cfg.ConnOptions, "client's connection": cl.Conn().cfg.ConnOptions,
			} {
				if !sameConnOptions(got, tt.want) {
					t.Errorf("%s: %+v\nwant %+v", side, got, tt.want)
				}
			}
			again, err := tt.want.withDefaults()
			if err != nil || !sameConnOptions(again, tt.want) {
				t.Errorf("filling the defaults again: %+v, %v\nwant no change", again, err)
			}
		})
	}
}

// sameConnOptions reports whether a and b hold the same values and the
// same hooks (compared by their presence: funcs are not comparable).
func sameConnOptions(a, b ConnOptions) bool {
	if (a.OnConnect == nil) != (b.OnConnect == nil) ||
		(a.OnDisconnect == nil) != (b.OnDisconnect == nil) ||
		(a.OnError == nil) != (b.OnError == nil) {
		return false
	}
	a.OnConnect, a.OnDisconnect, a.OnError = nil, nil, nil
	b.OnConnect, b.OnDisconnect, b.OnError = nil, nil, nil
	return reflect.DeepEqual(a, b)
}

// TestNilOptionsDefaults checks that nil options mean the defaults, on
// either side, the logger included.
func TestNilOptionsDefaults(t *testing.T) {
	want, err := ConnOptions{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if want.Logger != slog.Default() {
		t.Errorf("Logger = %v, want slog.Default()", want.Logger)
	}
	srv, err := NewServer(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if !sameConnOptions(srv.cfg.ConnOptions, want) {
		t.Errorf("NewServer(nil, nil): %+v\nwant %+v", srv.cfg.ConnOptions, want)
	}
	if srv.opts.HandshakeTimeout != DefaultHandshakeTimeout {
		t.Errorf("HandshakeTimeout = %v, want %v", srv.opts.HandshakeTimeout, DefaultHandshakeTimeout)
	}
	o, err := DialOptions{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if !sameConnOptions(o.ConnOptions, want) {
		t.Errorf("DialOptions{}: %+v\nwant %+v", o.ConnOptions, want)
	}
	if r := o.Retry; r.InitialInterval != 100*time.Millisecond || r.MaxInterval != 120*time.Second || r.MaxTries != 0 || r.MaxElapsedTime != 0 {
		t.Errorf("Retry = %+v, want 100ms to 120s, no caps", r)
	}
	if o.HandshakeTimeout != DefaultHandshakeTimeout || o.Proxy == nil || o.NetDialContext == nil {
		t.Errorf("HandshakeTimeout = %v, Proxy set: %v, NetDialContext set: %v; want %v, true, true",
			o.HandshakeTimeout, o.Proxy != nil, o.NetDialContext != nil, DefaultHandshakeTimeout)
	}
}

// TestInvalidServerOptions checks that NewServer refuses what only a
// server has, reporting every problem, the ConnOptions' first.
func TestInvalidServerOptions(t *testing.T) {
	srv, err := NewServer(nil, &ServerOptions{
		ConnOptions:     ConnOptions{SendQueue: -1},
		OriginPatterns:  []string{"*.example.com", "[bad"},
		MaxConns:        -1,
		MaxConnsPerAddr: -2,
	})
	if err == nil {
		srv.Close()
		t.Fatal("NewServer accepted the options")
	}
	if !errors.Is(err, path.ErrBadPattern) {
		t.Errorf("err = %v, want one wrapping path.ErrBadPattern", err)
	}
	checkProblems(t, err, "SendQueue", "[bad", "MaxConns", "MaxConnsPerAddr")
}

// TestInvalidDialOptions checks that Dial refuses bad retry options, which
// would spin (a zero wait) or say nothing clear, before any connect try,
// reporting every problem, the ConnOptions' first.
func TestInvalidDialOptions(t *testing.T) {
	err := dialInvalid(t, &DialOptions{
		ConnOptions: ConnOptions{MaxConcurrentCalls: -1},
		Retry:       RetryOptions{InitialInterval: -1, MaxInterval: -1, MaxTries: -1, MaxElapsedTime: -1},
	})
	checkProblems(t, err, "MaxConcurrentCalls", "Retry.InitialInterval", "Retry.MaxInterval", "Retry.MaxTries", "Retry.MaxElapsedTime")

	err = dialInvalid(t, &DialOptions{Retry: RetryOptions{InitialInterval: 5 * time.Minute}})
	checkProblems(t, err, "Retry.InitialInterval (5m0s) must not exceed Retry.MaxInterval (2m0s)")
}

// checkProblems checks that err joins one problem per field, in order,
// each naming its field.
func checkProblems(t *testing.T, err error, fields ...string) {
	t.Helper()
	got := leaves(err)
	if len(got) != len(fields) {
		t.Fatalf("%d problems, want %d (%q): %v", len(got), len(fields), fields, err)
	}
	for i, f := range fields {
		if !strings.Contains(got[i].Error(), f) {
			t.Errorf("problem %d is %q, want one about %s", i, got[i], f)
		}
	}
}

// TestOptionsCopied checks that NewServer and Dial keep copies of what
// they are given: changing the caller's options, its slices and maps
// included, afterwards changes nothing.
func TestOptionsCopied(t *testing.T) {
	sopts := &ServerOptions{ConnOptions: ConnOptions{Logger: quiet()}, OriginPatterns: []string{"a.example"}}
	srv, url := testServer(t, utilMux(), sopts)
	sopts.OriginPatterns[0] = "b.example"
	sopts.CallTimeout = time.Hour
	if srv.opts.OriginPatterns[0] != "a.example" || srv.cfg.CallTimeout != DefaultCallTimeout {
		t.Errorf("the server sees its caller's changes: %q, %v", srv.opts.OriginPatterns, srv.cfg.CallTimeout)
	}
	if sopts.SendQueue != 0 {
		t.Errorf("NewServer filled the caller's options: SendQueue = %d", sopts.SendQueue)
	}

	dopts := &DialOptions{Header: http.Header{"X-Token": {"a"}}}
	cl := testDial(t, url, dopts)
	dopts.Header.Set("X-Token", "b")
	dopts.CallTimeout = time.Hour
	if got := cl.opts.Header.Get("X-Token"); got != "a" || cl.cfg.CallTimeout != DefaultCallTimeout {
		t.Errorf("the client sees its caller's changes: X-Token %q, %v", got, cl.cfg.CallTimeout)
	}
	if dopts.SendQueue != 0 || dopts.Proxy != nil {
		t.Errorf("Dial filled the caller's options: SendQueue = %d, Proxy set: %v", dopts.SendQueue, dopts.Proxy != nil)
	}
}
