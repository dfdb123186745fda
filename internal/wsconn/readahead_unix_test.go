//go:build unix

package wsconn

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// TestReadAhead: while the peer sends a lot, reads of any size, small
// ones served from what a read took ahead, return the stream in order and
// then io.EOF.
func TestReadAhead(t *testing.T) {
	cc, sc := tcpPair(t)
	want := payload("<ahead>", 1<<20)
	sent := make(chan error, 1)
	go func() {
		_, err := cc.Write(want)
		if cerr := cc.CloseWrite(); err == nil {
			err = cerr
		}
		sent <- err
	}()
	c := New(sc)
	var got []byte
	sizes := []int{1, 100, 700, 5000, 40000, aheadSize}
	var err error
	for i := 0; err == nil; i++ {
		p := make([]byte, sizes[i%len(sizes)])
		var n int
		n, err = c.Read(p)
		got = append(got, p[:n]...)
	}
	if !errors.Is(err, io.EOF) {
		t.Fatalf("read: %v", err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, not the %d sent", len(got), len(want))
	}
	if c.rd == nil {
		t.Fatal("the reads never went ahead")
	}
}
