//go:build !unix

package services

import "testing"

// Redis skips the test: the servers are started on unix systems only.
func Redis(t testing.TB) *Server { t.Skip("services: unix only"); return nil }

// NATS skips the test: the servers are started on unix systems only.
func NATS(t testing.TB) *Server { t.Skip("services: unix only"); return nil }

// Postgres skips the test: the servers are started on unix systems only.
func Postgres(t testing.TB) *Server { t.Skip("services: unix only"); return nil }

// PostgresURL is the address a client of a Server from Postgres dials.
func PostgresURL(s *Server) string {
	return "postgres://postgres@" + s.Addr + "/postgres?sslmode=disable"
}

// Nginx skips the test: the servers are started on unix systems only.
func Nginx(t testing.TB, conf string) *Server { t.Skip("services: unix only"); return nil }

// NginxProxy skips the test: the servers are started on unix systems only.
func NginxProxy(t testing.TB, upstreams ...string) *Server {
	t.Skip("services: unix only")
	return nil
}
