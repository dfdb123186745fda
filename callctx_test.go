package wsrpc

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestCallCtx(t *testing.T) {
	conn, cancelConn := context.WithCancelCause(context.WithValue(context.Background(), connKey{}, (*Conn)(nil)))
	defer cancelConn(nil)

	// A caller's cancel reaches Done, Err, context.Cause and derived contexts.
	cc := &callCtx{conn: conn}
	child, stop := context.WithCancel(cc)
	defer stop()
	if cc.Err() != nil || child.Err() != nil {
		t.Fatal("ended early")
	}
	if _, ok := cc.Deadline(); ok {
		t.Error("a deadline without one sent")
	}
	cc.cancel(context.Canceled, errCanceledByPeer)
	<-cc.Done()
	<-child.Done()
	if !errors.Is(cc.Err(), context.Canceled) || !cc.endedBy(errCanceledByPeer) {
		t.Errorf("Err %v", cc.Err())
	}
	if _, ok := cc.Value(connKey{}).(*Conn); !ok {
		t.Error("the connection key is not carried")
	}

	// The deadline ends it, whether Done was asked for before or after.
	for _, early := range []bool{true, false} {
		cc := &callCtx{conn: conn, deadline: time.Now().Add(20 * time.Millisecond)}
		if early {
			<-cc.Done()
		} else {
			for cc.Err() == nil {
				time.Sleep(time.Millisecond)
			}
			<-cc.Done()
		}
		if !errors.Is(cc.Err(), context.DeadlineExceeded) || !errors.Is(context.Cause(cc), context.DeadlineExceeded) {
			t.Errorf("early=%v: Err %v, Cause %v", early, cc.Err(), context.Cause(cc))
		}
	}

	// The connection's end ends it, with the connection's cause.
	cc = &callCtx{conn: conn}
	done := cc.Done()
	lost := errors.New("link lost")
	cancelConn(lost)
	<-done
	if !errors.Is(cc.Err(), context.Canceled) || !cc.endedBy(lost) {
		t.Errorf("after the connection ended: Err %v", cc.Err())
	}
}
