package nettools

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, a bridge and veths (all inside test namespaces)")
	}
}

// testNS makes a network namespace removed at cleanup.
func testNS(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := NewNetNS(p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := DeleteNetNS(p); err != nil {
			t.Errorf("delete netns %s: %v", p, err)
		}
	})
	return p
}

func linkIn(t *testing.T, nsPath, name string) netlink.Link {
	t.Helper()
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
	l, err := h.LinkByName(name)
	if err != nil {
		return nil
	}
	return l
}

func TestBridgePodsReachEachOther(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	host := testNS(t, dir, "host")
	podA := testNS(t, dir, "a")
	podB := testNS(t, dir, "b")
	state := filepath.Join(dir, "ipam")
	b, err := NewBridge(BridgeConfig{PodCIDR: "10.42.7.0/24", StateDir: state, HostNetNS: host})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ipsA, err := b.SetUp(ctx, "aaaaaaaaaaaaaaaaaaaa", podA, nil)
	if err != nil {
		t.Fatal(err)
	}
	ipsB, err := b.SetUp(ctx, "bbbbbbbbbbbbbbbbbbbb", podB, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ipsA[0] != "10.42.7.2" || ipsB[0] != "10.42.7.3" {
		t.Fatalf("pod IPs %v %v, want 10.42.7.2 and .3", ipsA, ipsB)
	}
	if linkIn(t, host, DefaultBridge) == nil {
		t.Fatal("no bridge in the test's host namespace")
	}
	// Every pod port in hairpin mode (a pod reaches itself through its
	// Service); A's turned off here comes back with the next agent's
	// first SetUp below.
	hairpin := func(sandbox string) bool {
		t.Helper()
		ns, err := netns.GetFromPath(host)
		if err != nil {
			t.Fatal(err)
		}
		defer ns.Close()
		h, err := netlink.NewHandleAt(ns)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		l, err := h.LinkByName(vethName(sandbox))
		if err != nil {
			t.Fatal(err)
		}
		pi, err := h.LinkGetProtinfo(l)
		if err != nil {
			t.Fatal(err)
		}
		if sandbox == "aaaaaaaaaaaaaaaaaaaa" && pi.Hairpin {
			if err := h.LinkSetHairpin(l, false); err != nil {
				t.Fatal(err)
			}
		}
		return pi.Hairpin
	}
	if !hairpin("aaaaaaaaaaaaaaaaaaaa") || !hairpin("bbbbbbbbbbbbbbbbbbbb") {
		t.Fatal("pod ports without hairpin mode")
	}

	// A listens on its pod IP; B connects to it through the bridge.
	var l net.Listener
	if err := Do(podA, func() (err error) {
		l, err = net.Listen("tcp4", ipsA[0]+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.WriteString(c, "hello from a")
	}()
	var c net.Conn
	if err := Do(podB, func() (err error) {
		c, err = net.DialTimeout("tcp4", l.Addr().String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "hello from a" {
		t.Fatalf("read %q, %v", got, err)
	}

	// A new Bridge over the same state (an agent restart) does not hand out
	// addresses in use.
	b2, err := NewBridge(BridgeConfig{PodCIDR: "10.42.7.0/24", StateDir: state, HostNetNS: host})
	if err != nil {
		t.Fatal(err)
	}
	podC := testNS(t, dir, "c")
	ipsC, err := b2.SetUp(ctx, "cccccccccccccccccccc", podC, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ipsC[0] != "10.42.7.4" {
		t.Fatalf("after restart got %v, want 10.42.7.4", ipsC)
	}
	if !hairpin("bbbbbbbbbbbbbbbbbbbb") || !hairpin("aaaaaaaaaaaaaaaaaaaa") || !hairpin("cccccccccccccccccccc") {
		t.Fatal("after restart: pod ports without hairpin mode")
	}

	// TearDown removes the veth and frees the address; twice is fine.
	for range 2 {
		if err := b2.TearDown(ctx, "aaaaaaaaaaaaaaaaaaaa", podA); err != nil {
			t.Fatal(err)
		}
	}
	if linkIn(t, host, vethName("aaaaaaaaaaaaaaaaaaaa")) != nil {
		t.Error("veth left after TearDown")
	}
	if linkIn(t, podA, "eth0") != nil {
		t.Error("pod eth0 left after TearDown")
	}
	alloc, err := b2.Allocated()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := alloc["10.42.7.2"]; ok || len(alloc) != 2 {
		t.Errorf("allocations after TearDown: %v", alloc)
	}
	// TearDown with the pod namespace gone still releases the address.
	if err := b2.TearDown(ctx, "cccccccccccccccccccc", filepath.Join(dir, "gone")); err != nil {
		t.Fatal(err)
	}
}

func TestIPAMExhaustion(t *testing.T) {
	p := &ipam{dir: t.TempDir()}
	var err error
	if p.prefix, err = parsePrefix("10.42.9.0/30"); err != nil {
		t.Fatal(err)
	}
	a, err := p.allocate("one")
	if err != nil || a.String() != "10.42.9.2" {
		t.Fatalf("allocate: %v %v", a, err)
	}
	if again, _ := p.allocate("one"); again != a {
		t.Errorf("same owner got a second address %v", again)
	}
	if _, err := p.allocate("two"); err == nil {
		t.Error("a /30 gave a second pod address")
	}
	if err := p.release("one"); err != nil {
		t.Fatal(err)
	}
	if b, err := p.allocate("two"); err != nil || b.String() != "10.42.9.2" {
		t.Errorf("after release: %v %v", b, err)
	}
}
