package pgbroker

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/wsrpc/wsrpc"
)

// TestClassify: the server's answers to a statement are passed on as
// they are; a lost link, a refused connection and the server's own
// shutdown or connection limits are ErrBrokerUnavailable. The cases that
// the other tests cannot bring about on demand (a backend terminated
// mid-statement, too many connections) are here.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err         error
		unavailable bool
	}{
		{&pgconn.PgError{Code: "22023", Message: "payload string too long"}, false},
		{&pgconn.PgError{Code: "54000", Message: "too many notifications in the NOTIFY queue"}, false},
		{&pgconn.PgError{Code: "3D000", Message: `database "x" does not exist`}, false},
		{&pgconn.PgError{Code: "28P01", Message: "password authentication failed"}, false},
		{&pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}, true},
		{&pgconn.PgError{Code: "57P03", Message: "the database system is starting up"}, true},
		{&pgconn.PgError{Code: "08006", Message: "connection failure"}, true},
		{&pgconn.PgError{Code: "53300", Message: "too many clients already"}, true},
		{fmt.Errorf("dial: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), true},
		{io.ErrUnexpectedEOF, true},
	} {
		err := classify("publish", tc.err)
		if got := errors.Is(err, wsrpc.ErrBrokerUnavailable); got != tc.unavailable {
			t.Errorf("classify(%v) = %v: unavailable %v, want %v", tc.err, err, got, tc.unavailable)
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("classify(%v) = %v, which does not wrap it", tc.err, err)
		}
	}
}
