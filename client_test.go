package wsrpc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/wsrpc/wsrpc/internal/wstest"
)

// The tests here run under testing/synctest, over in-memory pipes: the
// clock is fake, so they assert the exact waits of connect and reconnect.
// The same features are tested over real sockets in dial_test.go,
// reconnect_test.go and tls_handshake_test.go.

// checkBackOff checks the waits between tries (their times, from any
// origin): the k-th wait is within half and one and a half times the
// interval, which starts at initial and doubles after each wait, up to
// maxInterval; and the waits are jittered, not all the interval exactly.
func checkBackOff(t *testing.T, tries []time.Duration, initial, maxInterval time.Duration) {
	t.Helper()
	x := initial
	jittered := false
	for k := 1; k < len(tries); k++ {
		wait := tries[k] - tries[k-1]
		if wait < x/2 || wait > x*3/2 {
			t.Errorf("wait %d, before try %d: %v, want within [%v, %v]", k, k+1, wait, x/2, x*3/2)
		}
		jittered = jittered || wait != x
		x = min(2*x, maxInterval)
	}
	if !jittered && len(tries) > 3 {
		t.Errorf("the waits %v are the intervals exactly: no jitter", tries)
	}
}

// TestDialBackOff: Dial retries a server that is down with jittered
// exponential backoff, from InitialInterval up to MaxInterval (100 ms and
// 120 s by default), makes MaxTries tries and returns the last one's error
// right after it.
func TestDialBackOff(t *testing.T) {
	tests := []struct {
		name             string
		retry            RetryOptions
		initial, maxWait time.Duration
	}{
		{"defaults", RetryOptions{MaxTries: 15}, 100 * time.Millisecond, 120 * time.Second},
		{"custom", RetryOptions{InitialInterval: 30 * time.Millisecond, MaxInterval: time.Second, MaxTries: 12}, 30 * time.Millisecond, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := newFlakyNet(nil) // always down
				_, err := Dial(t.Context(), "ws://pipe/ws", &DialOptions{
					ConnOptions:    ConnOptions{Logger: quiet()},
					NetDialContext: n.DialContext,
					Proxy:          noProxy,
					Retry:          tt.retry,
				})
				took := time.Since(n.start)
				if !errors.Is(err, wstest.ErrRefused) {
					t.Errorf("Dial: %v, want the refusal", err)
				}
				tries := n.dials()
				if len(tries) != tt.retry.MaxTries {
					t.Fatalf("%d tries, want MaxTries %d", len(tries), tt.retry.MaxTries)
				}
				if tries[0] != 0 {
					t.Errorf("the first try came after %v, want at once", tries[0])
				}
				checkBackOff(t, tries, tt.initial, tt.maxWait)
				if last := tries[len(tries)-1]; took != last {
					t.Errorf("Dial returned %v after its last try, want at once", took-last)
				}
			})
		})
	}
}

// TestDialMaxElapsedTime: Dial stops retrying once the next try would start
// past MaxElapsedTime, and returns right after the last try.
func TestDialMaxElapsedTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxElapsed, maxInterval = 5 * time.Second, time.Second
		n := newFlakyNet(nil)
		_, err := Dial(t.Context(), "ws://pipe/ws", &DialOptions{
			ConnOptions:    ConnOptions{Logger: quiet()},
			NetDialContext: n.DialContext,
			Proxy:          noProxy,
			Retry:          RetryOptions{InitialInterval: 100 * time.Millisecond, MaxInterval: maxInterval, MaxElapsedTime: maxElapsed},
		})
		took := time.Since(n.start)
		if !errors.Is(err, wstest.ErrRefused) {
			t.Errorf("Dial: %v, want the refusal", err)
		}
		tries := n.dials()
		checkBackOff(t, tries, 100*time.Millisecond, maxInterval)
		last := tries[len(tries)-1]
		if took != last {
			t.Errorf("Dial returned %v after its last try, want at once", took-last)
		}
		// The next wait, at most 1.5 × MaxInterval, would have passed it.
		if last > maxElapsed || last <= maxElapsed-maxInterval*3/2 {
			t.Errorf("the last try came at %v, want within (%v, %v]", last, maxElapsed-maxInterval*3/2, maxElapsed)
		}
	})
}

// TestDialContextBoundsRetries: without MaxTries, Dial retries until its
// context ends and returns then, at once, with the context's error and the
// last try's.
func TestDialContextBoundsRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout = 2 * time.Second
		ctx, cancel := context.WithTimeout(t.Context(), timeout)
		defer cancel()
		n := newFlakyNet(nil)
		_, err := Dial(ctx, "ws://pipe/ws", &DialOptions{ConnOptions: ConnOptions{Logger: quiet()}, NetDialContext: n.DialContext, Proxy: noProxy})
		if took := time.Since(n.start); took != timeout {
			t.Errorf("Dial returned after %v, want its context's %v", took, timeout)
		}
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, wstest.ErrRefused) {
			t.Errorf("Dial: %v, want context.DeadlineExceeded and the last try's refusal", err)
		}
		checkBackOff(t, n.dials(), 100*time.Millisecond, 120*time.Second)
	})
}

// TestDialHandshakeTimeoutExactly: a try whose server never answers the
// upgrade fails with ErrHandshakeTimeout after HandshakeTimeout exactly,
// and the next try follows after a backoff wait.
func TestDialHandshakeTimeoutExactly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const handshake = 4 * time.Second
		ps := wstest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			<-r.Context().Done() // never answers; returns when the client hangs up
		}))
		defer ps.Close()
		n := newFlakyNet(ps)
		_, err := Dial(t.Context(), ps.URL+"/ws", &DialOptions{
			ConnOptions:      ConnOptions{Logger: quiet()},
			NetDialContext:   n.DialContext,
			Proxy:            noProxy,
			HandshakeTimeout: handshake,
			Retry:            RetryOptions{InitialInterval: time.Second, MaxTries: 2},
		})
		took := time.Since(n.start)
		if !errors.Is(err, ErrHandshakeTimeout) {
			t.Errorf("Dial: %v, want ErrHandshakeTimeout", err)
		}
		tries := n.dials()
		if len(tries) != 2 {
			t.Fatalf("%d tries, want 2", len(tries))
		}
		if d := took - tries[1]; d != handshake {
			t.Errorf("the last try failed after %v, want HandshakeTimeout %v", d, handshake)
		}
		if wait := tries[1] - tries[0] - handshake; wait < time.Second/2 || wait > time.Second*3/2 {
			t.Errorf("the second try came %v after the first failed, want a backoff wait within [0.5s, 1.5s]", wait)
		}
	})
}

// callResult is what a call made in a goroutine returned, and when.
type callResult struct {
	at  time.Time
	err error
}

// goEcho calls echo on cl in a goroutine.
func goEcho(ctx context.Context, cl *Client) <-chan callResult {
	res := make(chan callResult, 1)
	go func() {
		got, err := Call[string](ctx, cl, "echo", textArgs{"while down"})
		if err == nil && got != "while down" {
			err = fmt.Errorf("echo answered %q", got)
		}
		res <- callResult{time.Now(), err}
	}()
	return res
}

// TestReconnectBackOff: when the link drops and the server stays down, a
// client tries again at once, then backs off as Dial does, starting over
// from InitialInterval on every outage; it reconnects at its first try
// after the server is back. A call made meanwhile fails at once with
// ErrNotConnected, or, with WaitForReady, waits for the reconnect and is
// answered right then.
func TestReconnectBackOff(t *testing.T) {
	for _, waitForReady := range []bool{false, true} {
		t.Run(fmt.Sprintf("WaitForReady=%v", waitForReady), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				retry := RetryOptions{InitialInterval: 100 * time.Millisecond, MaxInterval: 2 * time.Second}
				_, ps := pipeServer(t, utilMux(), nil)
				n := newFlakyNet(ps)
				connected := make(chan time.Time, 4)
				cl := pipeDial(t, ps, &DialOptions{
					ConnOptions:    ConnOptions{OnConnect: func(context.Context, *Conn) error { sendNoWait(connected, time.Now()); return nil }},
					NetDialContext: n.DialContext,
					Retry:          retry,
					WaitForReady:   waitForReady,
				})
				<-connected
				for outage := 1; outage <= 2; outage++ {
					before := len(n.dials())
					n.setDown(true)
					n.lastLink().Close() // the link drops
					dropped := time.Now()
					synctest.Wait() // the client saw it, and its first try failed
					if c := cl.Conn(); c != nil {
						t.Fatalf("outage %d: the client still has a connection", outage)
					}
					res := goEcho(t.Context(), cl)
					if !waitForReady {
						r := await(t, res, time.Minute, "the call made while down")
						if !errors.Is(r.err, ErrNotConnected) || r.at != dropped {
							t.Errorf("outage %d: a call while down returned %v after %v, want ErrNotConnected at once", outage, r.err, r.at.Sub(dropped))
						}
					}

					time.Sleep(10 * time.Second)
					n.setDown(false)
					up := time.Now()
					at := await(t, connected, time.Minute, "reconnect")
					tries := n.dials()[before:]
					if first := n.start.Add(tries[0]); first != dropped {
						t.Errorf("outage %d: the first reconnect try came %v after the drop, want at once", outage, first.Sub(dropped))
					}
					checkBackOff(t, tries, retry.InitialInterval, retry.MaxInterval)
					if prev, last := n.start.Add(tries[len(tries)-2]), n.start.Add(tries[len(tries)-1]); at != last || prev.After(up) || last.Before(up) {
						t.Errorf("outage %d: reconnected at %v, want at the first try after the server came back at %v (tries %v)",
							outage, at.Sub(dropped), up.Sub(dropped), tries)
					}
					if waitForReady {
						r := await(t, res, time.Minute, "the call made while down")
						if r.err != nil || r.at != at {
							t.Errorf("outage %d: a call while down, with WaitForReady: %v after %v, want an answer at the reconnect, after %v",
								outage, r.err, r.at.Sub(dropped), at.Sub(dropped))
						}
					}
					synctest.Wait() // the hooks returned: the connection is the client's
					mustEcho(t.Context(), t, cl, "after the reconnect")
				}
			})
		})
	}
}

// TestReconnectGivesUp: a reconnect that runs out of MaxTries, or of
// MaxElapsedTime, ends the client right after its last try, with the last
// try's error; a call waiting for the reconnect fails then with it too.
func TestReconnectGivesUp(t *testing.T) {
	const maxInterval = time.Second
	tests := []struct {
		name  string
		retry RetryOptions
	}{
		{"MaxTries", RetryOptions{MaxTries: 4}},
		{"MaxElapsedTime", RetryOptions{MaxElapsedTime: 5 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tt.retry.MaxInterval = maxInterval
				_, ps := pipeServer(t, utilMux(), nil)
				n := newFlakyNet(ps)
				cl := pipeDial(t, ps, &DialOptions{NetDialContext: n.DialContext, Retry: tt.retry, WaitForReady: true})
				before := len(n.dials())
				n.setDown(true)
				n.lastLink().Close()
				dropped := time.Now()
				synctest.Wait()
				res := goEcho(t.Context(), cl)

				await(t, cl.Done(), time.Hour, "the client to give up")
				ended := time.Now()
				if err := cl.Err(); !errors.Is(err, wstest.ErrRefused) {
					t.Errorf("Err() = %v, want the last try's refusal", err)
				}
				tries := n.dials()[before:]
				checkBackOff(t, tries, 100*time.Millisecond, maxInterval)
				last := n.start.Add(tries[len(tries)-1])
				if ended != last {
					t.Errorf("the client ended %v after its last try, want at once", ended.Sub(last))
				}
				if tt.retry.MaxTries > 0 && len(tries) != tt.retry.MaxTries {
					t.Errorf("%d tries, want MaxTries %d", len(tries), tt.retry.MaxTries)
				}
				if m := tt.retry.MaxElapsedTime; m > 0 {
					if d := last.Sub(dropped); d > m || d <= m-maxInterval*3/2 {
						t.Errorf("the last try came %v after the drop, want within (%v, %v]", d, m-maxInterval*3/2, m)
					}
				}
				r := await(t, res, time.Minute, "the call waiting for the reconnect")
				if !errors.Is(r.err, wstest.ErrRefused) || r.at != ended {
					t.Errorf("the waiting call returned %v, %v after the client ended; want its error at once", r.err, r.at.Sub(ended))
				}
			})
		})
	}
}

// TestWaitForReadyCallTimeout: with WaitForReady, a call without a deadline
// waits for a connection at most CallTimeout, exactly, and then fails with
// ErrNotConnected and context.DeadlineExceeded.
func TestWaitForReadyCallTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const callTimeout = 3 * time.Second
		_, ps := pipeServer(t, utilMux(), nil)
		n := newFlakyNet(ps)
		cl := pipeDial(t, ps, &DialOptions{ConnOptions: ConnOptions{CallTimeout: callTimeout}, NetDialContext: n.DialContext, WaitForReady: true})
		n.setDown(true)
		n.lastLink().Close()
		synctest.Wait()
		start := time.Now()
		err := cl.Call(context.Background(), "echo", textArgs{"x"}, nil)
		if took := time.Since(start); took != callTimeout {
			t.Errorf("the call waited %v, want CallTimeout %v", took, callTimeout)
		}
		if !errors.Is(err, ErrNotConnected) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("call: %v, want ErrNotConnected and context.DeadlineExceeded", err)
		}
		n.setDown(false) // let the client reconnect before it closes
	})
}
