package redisbroker

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults of [Options].
const (
	// DefaultMaxMessage is the default of Options.MaxMessage: 4 MiB, room
	// for an event as large as wsrpc's default MaxMessageSize (1 MiB) in
	// its envelope, and far below the 32 MB at which Redis disconnects a
	// subscriber by default.
	DefaultMaxMessage = 4 << 20
	// DefaultPingInterval is the default of Options.PingInterval.
	DefaultPingInterval = 5 * time.Second
	// DefaultConnectTimeout is the default of Options.ConnectTimeout.
	DefaultConnectTimeout = 10 * time.Second
)

// Options configures a [Broker]. A nil *Options means all defaults; a
// zero field means its default.
type Options struct {
	// MaxMessage is the length in bytes of the longest message Publish
	// sends; a longer one fails with an error wrapping
	// wsrpc.ErrBrokerMessageTooLarge. Zero means DefaultMaxMessage
	// (4 MiB); negative means no limit of the Broker's (Redis's own is
	// 512 MB, and see the package doc on its output buffers).
	MaxMessage int
	// PingInterval is how often the pub/sub connection is pinged: when
	// nothing, not even the answer to the last ping, came in one interval
	// (and no subscription's function is running), the link is taken as
	// lost, closed and reconnected. Zero means DefaultPingInterval (5 s);
	// negative disables pings (a link lost without the connection closing
	// then goes unnoticed until TCP gives up).
	PingInterval time.Duration
	// ConnectTimeout bounds each try to connect the pub/sub connection
	// again and subscribe its channels, after an outage. Zero means
	// DefaultConnectTimeout (10 s).
	ConnectTimeout time.Duration
	// Reconnect configures the backoff between tries to reconnect.
	Reconnect Backoff
	// Logger receives the Broker's logs: the link lost and back at Warn,
	// each failed try to reconnect at Debug. Nil means no logs.
	Logger *slog.Logger
}

// Backoff configures exponential backoff between tries: the first wait
// is InitialInterval, and each one doubles, up to MaxInterval, randomized
// to between half and one and a half times that.
type Backoff struct {
	// InitialInterval is the first wait. Zero means 100 ms.
	InitialInterval time.Duration
	// MaxInterval caps the wait, before randomization. Zero means 5 s.
	MaxInterval time.Duration
}

// withDefaults returns a copy of o with its defaults filled in, and an
// error joining every problem found.
func (o *Options) withDefaults() (Options, error) {
	var c Options
	if o != nil {
		c = *o
	}
	var errs []error
	if c.ConnectTimeout < 0 {
		errs = append(errs, fmt.Errorf("redisbroker: Options.ConnectTimeout (%v) must not be negative", c.ConnectTimeout))
	}
	if c.Reconnect.InitialInterval < 0 {
		errs = append(errs, fmt.Errorf("redisbroker: Options.Reconnect.InitialInterval (%v) must not be negative", c.Reconnect.InitialInterval))
	}
	if c.Reconnect.MaxInterval < 0 {
		errs = append(errs, fmt.Errorf("redisbroker: Options.Reconnect.MaxInterval (%v) must not be negative", c.Reconnect.MaxInterval))
	}
	if c.MaxMessage == 0 {
		c.MaxMessage = DefaultMaxMessage
	}
	if c.PingInterval == 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.Reconnect.InitialInterval == 0 {
		c.Reconnect.InitialInterval = 100 * time.Millisecond
	}
	if c.Reconnect.MaxInterval == 0 {
		c.Reconnect.MaxInterval = 5 * time.Second
	}
	if c.Reconnect.InitialInterval > c.Reconnect.MaxInterval {
		errs = append(errs, fmt.Errorf("redisbroker: Options.Reconnect.InitialInterval (%v) must not exceed MaxInterval (%v)", c.Reconnect.InitialInterval, c.Reconnect.MaxInterval))
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, errors.Join(errs...)
}
