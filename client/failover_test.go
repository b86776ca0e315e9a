package client

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	return ln
}

// closedAddr is an address nothing listens on (a port held, then freed).
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// remote dials through f and returns the address reached.
func remote(t *testing.T, f *Failover) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := f.DialContext(ctx, "tcp", "ignored:443")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	return c.RemoteAddr().String()
}

func TestFailoverDialsALiveMasterAndRemembers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "masters.json")
	join := closedAddr(t) // the join master is gone
	a, b := listen(t), listen(t)
	f, err := NewFailover(path, "https://"+join, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.SetSource("endpoints", []string{a.Addr().String(), b.Addr().String()})
	if got := remote(t, f); got != a.Addr().String() {
		t.Fatalf("reached %s, want %s", got, a.Addr())
	}
	// A restarted agent reads the masters back, the last good first.
	g, err := NewFailover(path, "https://"+join, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{a.Addr().String(), join, b.Addr().String()}
	if !slices.Equal(g.Masters(), want) {
		t.Fatalf("masters read back %v, want %v", g.Masters(), want)
	}
	// The last good master goes away: the next dial reaches another.
	_ = a.Close()
	if got := remote(t, g); got != b.Addr().String() {
		t.Fatalf("reached %s after the first master closed, want %s", got, b.Addr())
	}
}

func TestFailoverRefusesAnotherFormatVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "masters.json")
	if err := os.WriteFile(path, []byte(`{"version":2,"masters":["127.0.0.1:6443"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFailover(path, "https://127.0.0.1:6443", nil); err == nil {
		t.Fatal("version 2 accepted")
	}
	if err := os.WriteFile(path, []byte(`{"version":1,"masters":["127.0.0.9:6443"],"last":"127.0.0.9:6443"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := NewFailover(path, "https://127.0.0.1:6443", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Masters(); !slices.Equal(got, []string{"127.0.0.9:6443", "127.0.0.1:6443"}) {
		t.Fatalf("masters %v", got)
	}
}
