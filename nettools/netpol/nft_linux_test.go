package netpol

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/skiff-io/skiff/nettools"
	"github.com/skiff-io/skiff/nettools/nettest"
)

func needRoot(t *testing.T) {
	nettest.NeedRoot(t, "network namespaces, a bridge and nftables tables")
}

func newNS(t *testing.T, dir, name string) string { return nettest.NetNS(t, dir, name) }

// listen serves "ok" on ip:port inside ns.
func listen(t *testing.T, ns, ip string, port int) {
	nettest.ServeTCP(t, ns, net.JoinHostPort(ip, strconv.Itoa(port)), nettest.Reply("ok"))
}

func reach(ns, ip string, port int) bool {
	s, _ := nettest.Fetch(ns, net.JoinHostPort(ip, strconv.Itoa(port)), 500*time.Millisecond)
	return s == "ok"
}

func TestProgramSameNode(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	host := newNS(t, dir, "host")
	br, err := nettools.NewBridge(nettools.BridgeConfig{PodCIDR: "10.42.5.0/24", StateDir: filepath.Join(dir, "ipam"), HostNetNS: host})
	if err != nil {
		t.Fatal(err)
	}
	ns := map[string]string{}
	ip := map[string]string{}
	for _, p := range []string{"a", "b", "c"} {
		ns[p] = newNS(t, dir, p)
		ips, err := br.SetUp(context.Background(), p+"-sandbox-0000", ns[p], nil)
		if err != nil {
			t.Fatal(err)
		}
		ip[p] = ips[0]
		listen(t, ns[p], ip[p], 80)
		listen(t, ns[p], ip[p], 81)
	}
	if err := EnableBridgeFiltering(host); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Remove(host) })
	pfx := func(p string) netip.Prefix { return netip.MustParsePrefix(ip[p] + "/32") }
	check := func(when string, want map[[2]string]bool) {
		t.Helper()
		for pair, ok := range want {
			for _, port := range []int{80} {
				if got := reach(ns[pair[0]], ip[pair[1]], port); got != ok {
					t.Errorf("%s: %s → %s:%d reachable %v, want %v", when, pair[0], pair[1], port, got, ok)
				}
			}
		}
	}

	// b accepts only a, on port 80; a may send only to b.
	rules := []PodRules{
		{Name: "b", IP: netip.MustParseAddr(ip["b"]), IngressIsolated: true,
			// Two pod addresses: a set (10.42.5.200 is nobody's).
			Ingress: []Allow{{Peers: []netip.Prefix{pfx("a"), netip.MustParsePrefix("10.42.5.200/32")}, Ports: []PortRange{{Proto: protoTCP, From: 80, To: 80}}}}},
		{Name: "a", IP: netip.MustParseAddr(ip["a"]), EgressIsolated: true,
			Egress: []Allow{{Peers: []netip.Prefix{pfx("b")}, AllPorts: true}}},
	}
	for range 2 { // replacing the table again changes nothing
		if err := Program(host, rules); err != nil {
			t.Fatal(err)
		}
	}
	check("policies", map[[2]string]bool{
		{"a", "b"}: true,  // allowed both ways (a's egress, b's ingress)
		{"c", "b"}: false, // not allowed into b
		{"a", "c"}: false, // not allowed out of a
		{"c", "a"}: true,  // a is not isolated for ingress; the reply passes (established)
		{"b", "c"}: true,  // b is not isolated for egress
	})
	if reach(ns["a"], ip["b"], 81) {
		t.Error("a → b:81 reachable, only port 80 is allowed")
	}
	// No rules: everything is allowed again.
	if err := Program(host, nil); err != nil {
		t.Fatal(err)
	}
	check("no policies", map[[2]string]bool{{"c", "b"}: true, {"a", "c"}: true})
}

func isRoot() bool { return os.Geteuid() == 0 }
