//go:build !unix

package wsconn

// aheadReader reads a socket ahead of its reader on Unix systems, through
// the socket's RawConn (readahead_unix.go). Elsewhere it does not exist.
type aheadReader struct{}

// Read reads from the socket. Without the Unix read-ahead, each read is
// one read of the socket: gorilla's own buffer does the batching.
func (c *Conn) Read(p []byte) (int, error) { return c.nc.Read(p) }
