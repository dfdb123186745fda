//go:build unix

package services

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// reservePort takes port p for this process until release is called, so
// that FreePort in another process passes it over: it holds an exclusive
// flock(2) on a file named after the port in a directory under
// os.TempDir(). The kernel drops the lock when the process dies, so a
// crashed test binary holds nothing. The files are left in place (empty);
// removing one would let two processes lock two different files of one
// name. ok is false if another process holds p. If the directory cannot be
// used, every port is taken as free, as before reservations existed.
func reservePort(p int) (release func(), ok bool) {
	dir := filepath.Join(os.TempDir(), "wsrpc-test-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return func() {}, true
	}
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(p)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return func() {}, true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	return func() { f.Close() }, true
}
