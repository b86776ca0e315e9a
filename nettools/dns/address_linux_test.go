package dns

import (
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/skiff-io/skiff/nettools"
)

// TestServeOnHeldAddress holds the cluster DNS IP on lo of a network
// namespace made by the test, serves there, and queries from inside it.
// Nothing touches the test process's own namespace.
func TestServeOnHeldAddress(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	nsPath := filepath.Join(t.TempDir(), "node-ns")
	if err := nettools.NewNetNS(nsPath); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nettools.DeleteNetNS(nsPath) })
	// Not the default cluster DNS address (10.43.0.10): an agent run on
	// this host (by make run or an e2e test) leaves that one on the
	// host's lo by design, which would make the leak check below fail
	// for a reason that is not this test's.
	const ip = "10.43.254.53"
	if hostHas(t, ip) {
		t.Fatalf("%s is on the host's lo before the test: remove it (ip addr del %s/32 dev lo)", ip, ip)
	}
	for i := 0; i < 2; i++ { // holding twice is fine
		if err := HoldAddress(nsPath, ip); err != nil {
			t.Fatal(err)
		}
	}
	src := NewFakeSource()
	src.SetService(service("default", "web", "10.43.0.20"))
	s, err := New(Config{Listen: []string{net.JoinHostPort(ip, "53")}, NetNS: nsPath, Source: src,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	for _, network := range []string{"udp", "tcp"} {
		var r *dns.Msg
		err := nettools.Do(nsPath, func() error {
			m := new(dns.Msg)
			m.SetQuestion("web.default.svc.cluster.local.", dns.TypeA)
			var err error
			r, _, err = (&dns.Client{Net: network, Timeout: 5 * time.Second}).Exchange(m, ip+":53")
			return err
		})
		if err != nil {
			t.Fatalf("%s query inside the namespace: %v", network, err)
		}
		if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "10.43.0.20" {
			t.Fatalf("%s answer %v", network, r)
		}
	}
	// The address is on lo of that namespace only.
	if hostHas(t, ip) {
		t.Fatalf("%s leaked into the test's own namespace", ip)
	}
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, _ := h.LinkByName("lo")
	if err := ReleaseAddress(nsPath, ip); err != nil {
		t.Fatal(err)
	}
	addrs, _ := h.AddrList(lo, netlink.FAMILY_V4)
	for _, a := range addrs {
		if a.IP.String() == ip {
			t.Fatal("address still held after release")
		}
	}
}

// hostHas reports whether ip is an address of the test process's own
// network namespace.
func hostHas(t *testing.T, ip string) bool {
	t.Helper()
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if a.IP.String() == ip {
			return true
		}
	}
	return false
}
