package routes

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/skiff-io/skiff/nettools"
	"github.com/skiff-io/skiff/nettools/nettest"
	"github.com/skiff-io/skiff/nettools/nft"
)

func needRoot(t *testing.T) {
	nettest.NeedRoot(t, "network namespaces, veths, routes and nftables tables")
}

func newNS(t *testing.T, dir, name string) string { return nettest.NetNS(t, dir, name) }

func handleIn(t *testing.T, ns string) *netlink.Handle {
	t.Helper()
	n, err := netns.GetFromPath(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	h, err := netlink.NewHandleAt(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// link joins namespaces a and b with a veth pair named na/nb holding
// addresses ipa/ipb (with their prefix).
func link(t *testing.T, a, na, ipa, b, nb, ipb string) {
	t.Helper()
	ha, hb := handleIn(t, a), handleIn(t, b)
	nsb, err := netns.GetFromPath(b)
	if err != nil {
		t.Fatal(err)
	}
	defer nsb.Close()
	if err := ha.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: na}, PeerName: nb, PeerNamespace: netlink.NsFd(int(nsb))}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct {
		h    *netlink.Handle
		name string
		ip   string
	}{{ha, na, ipa}, {hb, nb, ipb}} {
		l, err := s.h.LinkByName(s.name)
		if err != nil {
			t.Fatal(err)
		}
		addr, err := netlink.ParseAddr(s.ip)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.h.AddrAdd(l, addr); err != nil {
			t.Fatal(err)
		}
		if err := s.h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
}

// testNode is a node namespace with a pod bridge and one pod.
type testNode struct {
	ns, pod string
	podIP   string
	dp      *Dataplane
}

func newTestNode(t *testing.T, dir, name string, backend Backend, nodeIP, podCIDR string) *testNode {
	t.Helper()
	n := &testNode{ns: newNS(t, dir, name), pod: newNS(t, dir, name+"-pod")}
	br, err := nettools.NewBridge(nettools.BridgeConfig{PodCIDR: podCIDR, StateDir: filepath.Join(dir, name+"-ipam"), HostNetNS: n.ns})
	if err != nil {
		t.Fatal(err)
	}
	ips, err := br.SetUp(context.Background(), name+"-sandbox-0000", n.pod, nil)
	if err != nil {
		t.Fatal(err)
	}
	n.podIP = ips[0]
	n.dp = &Dataplane{Backend: backend, NodeName: name, NodeIP: netip.MustParseAddr(nodeIP),
		ClusterCIDR: netip.MustParsePrefix("10.42.0.0/16"), NetNS: n.ns}
	return n
}

// serve listens in ns on ip and writes back the address each client
// connected from.
func serve(t *testing.T, ns, ip string) string {
	return nettest.ServeTCP(t, ns, ip+":0", nettest.RemoteHost)
}

// whoami connects from ns to addr and returns the source address the
// server saw.
func whoami(ns, addr string) (string, error) { return nettest.Fetch(ns, addr, 2*time.Second) }

func ownRoutes(t *testing.T, ns string) []netlink.Route {
	t.Helper()
	rs, err := handleIn(t, ns).RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestDataplane(t *testing.T) {
	needRoot(t)
	for _, backend := range []Backend{HostGW, VXLAN} {
		t.Run(string(backend), func(t *testing.T) { testDataplane(t, backend) })
	}
}

func testDataplane(t *testing.T, backend Backend) {
	dir := t.TempDir()
	a := newTestNode(t, dir, "a", backend, "192.0.2.1", "10.42.1.0/24")
	b := newTestNode(t, dir, "b", backend, "192.0.2.2", "10.42.2.0/24")
	link(t, a.ns, "eth0", "192.0.2.1/24", b.ns, "eth0", "192.0.2.2/24")
	outside := newNS(t, dir, "outside")
	link(t, a.ns, "eth1", "203.0.113.1/24", outside, "eth0", "203.0.113.2/24")

	peerOf := func(n *testNode, cidr string) Peer {
		return Peer{Name: n.dp.NodeName, PodCIDR: netip.MustParsePrefix(cidr), NodeIP: n.dp.NodeIP, VTEPMAC: VTEPMAC(n.dp.NodeName)}
	}
	// Twice: the second pass (an agent restart) changes nothing.
	for range 2 {
		for _, s := range []struct {
			n    *testNode
			cidr string
			peer Peer
		}{{a, "10.42.1.0/24", peerOf(b, "10.42.2.0/24")}, {b, "10.42.2.0/24", peerOf(a, "10.42.1.0/24")}} {
			mac, err := s.n.dp.Setup(netip.MustParsePrefix(s.cidr))
			if err != nil {
				t.Fatal(err)
			}
			if backend == VXLAN && mac.String() != VTEPMAC(s.n.dp.NodeName).String() {
				t.Errorf("VTEP MAC %s, want %s", mac, VTEPMAC(s.n.dp.NodeName))
			}
			if err := s.n.dp.Sync([]Peer{s.peer}); err != nil {
				t.Fatal(err)
			}
			if err := s.n.dp.SyncMasquerade(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if rs := ownRoutes(t, a.ns); len(rs) != 1 || rs[0].Dst.String() != "10.42.2.0/24" {
		t.Fatalf("routes of a: %v", rs)
	}

	// Pod to pod across nodes keeps the pod's address.
	addr := serve(t, b.pod, b.podIP)
	got, err := whoami(a.pod, addr)
	if err != nil || got != a.podIP {
		t.Fatalf("pod a → pod b: seen from %q (%v), want %s", got, err, a.podIP)
	}
	// Pod to outside the cluster CIDR is masqueraded to the node's address.
	got, err = whoami(a.pod, serve(t, outside, "203.0.113.2"))
	if err != nil || got != "203.0.113.1" {
		t.Fatalf("pod a → outside: seen from %q (%v), want the node address 203.0.113.1", got, err)
	}

	// Peer b gone: its route (and vxlan entries) go, and b's pod is out of
	// reach.
	if err := a.dp.Sync(nil); err != nil {
		t.Fatal(err)
	}
	if rs := ownRoutes(t, a.ns); len(rs) != 0 {
		t.Errorf("routes left: %v", rs)
	}
	if backend == VXLAN {
		h := handleIn(t, a.ns)
		vx, err := h.LinkByName(VXLANDevice)
		if err != nil {
			t.Fatal(err)
		}
		if ns, _ := h.NeighList(vx.Attrs().Index, 2 /* AF_INET */); len(ns) != 0 {
			t.Errorf("neighbour entries left: %v", ns)
		}
	}
	if _, err := whoami(a.pod, addr); err == nil {
		t.Error("pod b still reachable after its node left")
	}

	// Switching a to the other backend removes or makes the device.
	a.dp.Backend = map[Backend]Backend{HostGW: VXLAN, VXLAN: HostGW}[backend]
	if _, err := a.dp.Setup(netip.MustParsePrefix("10.42.1.0/24")); err != nil {
		t.Fatal(err)
	}
	_, err = handleIn(t, a.ns).LinkByName(VXLANDevice)
	if hasDev := err == nil; hasDev != (a.dp.Backend == VXLAN) {
		t.Errorf("backend %s: vxlan device present %v", a.dp.Backend, hasDev)
	}

	// A clean shutdown removes the masquerade table.
	if err := a.dp.Cleanup(); err != nil {
		t.Fatal(err)
	}
	c, done, err := nft.Dial(a.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	if ok, err := nft.TableExists(c, nftables.TableFamilyIPv4, MasqTable); err != nil || ok {
		t.Errorf("masquerade table after cleanup: exists %v, %v", ok, err)
	}
	if err := a.dp.Cleanup(); err != nil {
		t.Errorf("second cleanup: %v", err)
	}
}

func TestPeersFrom(t *testing.T) {
	mk := func(name, cidr, ip, mac string) *corev1Node { return newNode(name, cidr, ip, mac) }
	nodes := []*corev1Node{
		mk("self", "10.42.0.0/24", "192.0.2.1", "02:00:00:00:00:01"),
		mk("b", "10.42.2.0/24", "192.0.2.3", "02:00:00:00:00:03"),
		mk("a", "10.42.1.0/24", "192.0.2.2", ""),
		mk("nocidr", "", "192.0.2.4", "02:00:00:00:00:04"),
		mk("noip", "10.42.3.0/24", "", "02:00:00:00:00:05"),
	}
	got := PeersFrom(nodes, "self", HostGW)
	if s := fmt.Sprint(peerNames(got)); s != "[a b]" {
		t.Errorf("host-gw peers %s", s)
	}
	got = PeersFrom(nodes, "self", VXLAN)
	if s := fmt.Sprint(peerNames(got)); s != "[b]" {
		t.Errorf("vxlan peers %s (a has no VTEP MAC)", s)
	}
	if got[0].Gateway().String() != "10.42.2.0" || got[0].NodeIP.String() != "192.0.2.3" {
		t.Errorf("peer %+v", got[0])
	}
}

func peerNames(ps []Peer) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}
