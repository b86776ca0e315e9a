// Package nettest has the helpers that root tests of the nettools packages
// share: a skip when not root, network namespaces removed at cleanup, and
// TCP servers and clients inside namespaces. Tests only; nothing in the
// product imports it.
package nettest

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiff-io/skiff/nettools"
)

// NeedRoot skips the test unless it runs as root; what says what the test
// makes that needs root.
func NeedRoot(t testing.TB, what string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates " + what + " (all inside test namespaces)")
	}
}

// NetNS makes a network namespace bound at dir/name, deleted at cleanup,
// and returns its path.
func NetNS(t testing.TB, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := nettools.NewNetNS(p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := nettools.DeleteNetNS(p); err != nil {
			t.Errorf("delete netns %s: %v", p, err)
		}
	})
	return p
}

// Reply answers every client with the same text.
func Reply(s string) func(net.Conn) string { return func(net.Conn) string { return s } }

// RemoteHost answers every client with the address it connected from.
func RemoteHost(c net.Conn) string {
	host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	return host
}

// ServeTCP listens on addr (IPv4, port 0 for any) inside ns, writes
// reply(conn) to each client and closes; it returns the address listened
// on. The listener is closed at cleanup.
func ServeTCP(t testing.TB, ns, addr string, reply func(net.Conn) string) string {
	t.Helper()
	var l net.Listener
	if err := nettools.Do(ns, func() (err error) {
		l, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, reply(c))
			c.Close()
		}
	}()
	return l.Addr().String()
}

// Fetch connects from ns to addr (dialing for at most dial) and returns
// all the server wrote within 2 seconds.
func Fetch(ns, addr string, dial time.Duration) (string, error) {
	var out string
	err := nettools.Do(ns, func() error {
		c, err := net.DialTimeout("tcp4", addr, dial)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		b, err := io.ReadAll(c)
		out = string(b)
		return err
	})
	return out, err
}
