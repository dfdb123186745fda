package wsrpc

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// TestCallDeadlineExactly: a call fails with context.DeadlineExceeded at
// its context's deadline exactly, or CallTimeout after it began when its
// context has none; over the negotiated extension the handler's context
// carries the caller's deadline and ends then. It runs under
// testing/synctest over an in-memory pipe; TestTimeouts and
// TestCancelPropagates test the same over real sockets.
func TestCallDeadlineExactly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const callTimeout, deadline = 3 * time.Second, 1500 * time.Millisecond
		type seen struct {
			deadline time.Time
			ended    time.Time
		}
		handled := make(chan seen, 2)
		m := NewMux()
		Register(m, "hang", func(ctx context.Context, _ struct{}) (bool, error) {
			dl, _ := ctx.Deadline()
			<-ctx.Done()
			handled <- seen{dl, time.Now()}
			return false, ctx.Err()
		})
		_, ps := pipeServer(t, m, nil)
		cl := pipeDial(t, ps, &DialOptions{ConnOptions: ConnOptions{CallTimeout: callTimeout}})

		for _, tc := range []struct {
			name string
			ctx  func() (context.Context, context.CancelFunc)
			want time.Duration
		}{
			{"context deadline", func() (context.Context, context.CancelFunc) { return context.WithTimeout(t.Context(), deadline) }, deadline},
			{"CallTimeout", func() (context.Context, context.CancelFunc) { return context.WithCancel(t.Context()) }, callTimeout},
		} {
			ctx, cancel := tc.ctx()
			start := time.Now()
			err := cl.Call(ctx, "hang", nil, nil)
			cancel()
			if took := time.Since(start); took != tc.want || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s: the call returned %v after %v, want context.DeadlineExceeded after %v", tc.name, err, took, tc.want)
			}
			s := await(t, handled, time.Minute, "the handler's end")
			if want := start.Add(tc.want); !s.deadline.Equal(want) || !s.ended.Equal(want) {
				t.Errorf("%s: the handler's context had the deadline %v and ended at %v, want both at %v",
					tc.name, s.deadline.Sub(start), s.ended.Sub(start), tc.want)
			}
		}
	})
}
