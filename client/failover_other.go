//go:build !linux

package client

import (
	"syscall"
	"time"
)

// userTimeout is Linux's TCP_USER_TIMEOUT; elsewhere keepalives and
// HTTP/2 pings close a dead master's connection.
func userTimeout(time.Duration) func(network, address string, c syscall.RawConn) error { return nil }
