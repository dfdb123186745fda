package wsrpc

import (
	"context"
	"time"
)

// pongWait is how long a pong waits for gorilla's write lock.
func pongWait(writeTimeout time.Duration) time.Duration {
	if writeTimeout > 0 {
		return writeTimeout
	}
	return DefaultWriteTimeout
}

func (c *Conn) keepAliveTick() {
	ka := c.cfg.KeepAlive
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.wg.Add(1)
	c.ka.Reset(ka.Interval)
	c.mu.Unlock()
	defer c.wg.Done()

	if !c.keepAliveCheck() {
		return
	}
	if c.cfg.pingRPC {
		ctx, cancel := context.WithTimeout(c.ctx, ka.Timeout)
		defer cancel()
		if err := c.call(ctx, "_ping_", nil, nil, ""); err != nil {
			c.logger().Debug("keep-alive _ping_", "err", err)
		}
	}
}

// keepAliveCheck closes the connection if the peer has been silent for
// the keep-alive interval and timeout, or longer, and otherwise queues a
// WebSocket ping. It never blocks. It reports whether the connection lives.
func (c *Conn) keepAliveCheck() bool {
	ka := c.cfg.KeepAlive
	idle := time.Since(c.start) - time.Duration(c.lastRead.Load())
	if idle >= ka.Interval+ka.Timeout {
		c.logger().Debug("keep-alive: peer silent", "idle", idle)
		c.fail(ErrKeepAliveTimeout)
		return false
	}
	ping := getBuf()
	ping.ping = true
	c.trySend(ping)
	return true
}

// keepAlive pings every connection each KeepAlive.Interval and closes the
// silent ones: one goroutine for all of the server's connections, instead
// of a timer each. It runs from the first connection until Close or
// Shutdown.
func (s *Server) keepAlive(stop, stopped chan struct{}) {
	defer close(stopped)
	t := time.NewTicker(s.cfg.KeepAlive.Interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		// Checked outside s.mu: closing a silent connection's socket and
		// logging it must not hold up new upgrades.
		for _, c := range s.Conns() {
			c.keepAliveCheck() // never blocks on the peer
		}
	}
}

// stopKeepAlive stops the keep-alive goroutine, if it runs, and waits.
func (s *Server) stopKeepAlive() {
	s.mu.Lock()
	stop, stopped := s.keeper, s.kept
	if stop != nil {
		select {
		case <-stop:
		default:
			close(stop)
		}
	}
	s.mu.Unlock()
	if stopped != nil {
		<-stopped
	}
}
