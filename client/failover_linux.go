package client

import (
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// userTimeout makes the kernel drop a connection whose sent data stays
// unacknowledged for d (TCP_USER_TIMEOUT): a request to a master that
// vanished without a FIN or RST (a cut link, a powered-off machine) fails
// in d instead of waiting for HTTP/2's ping timeout.
func userTimeout(d time.Duration) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d/time.Millisecond))
		})
		if err != nil {
			return err
		}
		return serr
	}
}
