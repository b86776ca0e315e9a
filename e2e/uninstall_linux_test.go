package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
	"github.com/skiff-io/skiff/nettools/routes"
)

// hostState is what Skiff leaves on a host (in the node's network
// namespace, and under its data dir), listed kind by kind.
type hostState map[string][]string

func (s hostState) String() string {
	var b strings.Builder
	for k, v := range s {
		if len(v) > 0 {
			fmt.Fprintf(&b, "\n  %s: %v", k, v)
		}
	}
	return b.String()
}

// skiffOnHost lists Skiff's things: the pod's processes and cgroups, the
// shims and mounts of the data dir, and in the network namespace the
// bridge, VXLAN device and veths, nftables tables skiff-*, routes of
// Skiff's protocol and Service addresses on lo.
func skiffOnHost(t *testing.T, nsName, dataDir, podUID string) hostState {
	t.Helper()
	s := hostState{}
	for _, pid := range podPIDs(podUID) {
		s["pod processes"] = append(s["pod processes"], fmt.Sprint(pid))
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dataDir) {
			s["mounts"] = append(s["mounts"], f[4])
		}
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		b, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if strings.HasPrefix(string(b), "skiff-shim\x00") && strings.Contains(string(b), dataDir) {
			s["shims"] = append(s["shims"], p.Name())
		}
	}
	cgs, _ := filepath.Glob("/sys/fs/cgroup/*/skiff/kubepods/*/pod" + podUID)
	more, _ := filepath.Glob("/sys/fs/cgroup/*/skiff/kubepods/pod" + podUID)
	s["pod cgroups"] = append(cgs, more...)
	if _, err := os.Stat(dataDir); err == nil {
		s["data dir"] = []string{dataDir}
	}

	ns, err := netns.GetFromName(nsName)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if n := l.Attrs().Name; n == "skiff0" || n == "skiff.vxlan" || (l.Type() == "veth" && strings.HasPrefix(n, "sk")) {
			s["links"] = append(s["links"], n)
		}
	}
	rs, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: routes.RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		s["routes"] = append(s["routes"], r.String())
	}
	if lo, err := h.LinkByName("lo"); err == nil {
		addrs, _ := h.AddrList(lo, netlink.FAMILY_V4)
		svc := netip.MustParsePrefix("10.43.0.0/16")
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && svc.Contains(ip) {
				s["lo addresses"] = append(s["lo addresses"], a.IPNet.String())
			}
		}
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if strings.HasPrefix(tb.Name, "skiff-") {
			s["nftables tables"] = append(s["nftables tables"], tb.Name)
		}
	}
	return s
}

// TestUninstallLeavesNothing: after a real agent in a test network
// namespace ran a real container, `skiff killall` stops the agent and
// the container (the data stays), and `skiff uninstall`, run in that
// namespace against the agent's data dir and a temporary --root holding
// what `skiff install` wrote, leaves nothing of Skiff: no pod processes,
// shims, mounts or pod cgroups, no skiff0, skiff.vxlan or pod veths, no
// nftables tables skiff-*, no routes of Skiff's protocol, no Service
// addresses on lo, no unit, binary copy or data dir. Before, neither
// command existed.
func TestUninstallLeavesNothing(t *testing.T) {
	n := startRealNode(t)
	n.create(bbPod("victim", corev1.RestartPolicyAlways, "sleep 3600"))
	p := n.waitPod("victim", "running", phase(corev1.PodRunning))
	uid := string(p.UID)
	dataDir, ns := n.agent.DataDir, n.agent.Netns
	bin := testutil.Binary(t)
	root := t.TempDir()
	if out, err := exec.Command(bin, "install", "--root", root, "--init", "systemd", "agent", "--server", n.master.URL()).CombinedOutput(); err != nil {
		t.Fatalf("install: %v: %s", err, out)
	}
	before := skiffOnHost(t, ns, dataDir, uid)
	for _, kind := range []string{"pod processes", "shims", "mounts", "pod cgroups", "links", "nftables tables", "lo addresses", "data dir"} {
		if len(before[kind]) == 0 {
			t.Fatalf("no %s before uninstall: the test sees nothing to clean:%s", kind, before)
		}
	}
	t.Logf("before:%s", before)

	// killall: everything stops, the data stays. (--keep-empty-cgroups:
	// other tests on this host share the cgroup parent /skiff.)
	if out, err := exec.Command("nsenter", "--net=/run/netns/"+ns, bin, "killall", "--data-dir", dataDir, "--keep-empty-cgroups").CombinedOutput(); err != nil {
		t.Fatalf("killall: %v: %s", err, out)
	}
	after := skiffOnHost(t, ns, dataDir, uid)
	if len(after["data dir"]) == 0 {
		t.Error("killall removed the data dir")
	}
	delete(after, "data dir")
	if s := after.String(); s != "" {
		t.Errorf("left after killall:%s", s)
	}
	n.agent.Stop() // exited already: the test's handle forgets it

	if out, err := exec.Command("nsenter", "--net=/run/netns/"+ns, bin, "uninstall", "--data-dir", dataDir, "--root", root, "--keep-empty-cgroups").CombinedOutput(); err != nil {
		t.Fatalf("uninstall: %v: %s", err, out)
	}
	if s := skiffOnHost(t, ns, dataDir, uid).String(); s != "" {
		t.Errorf("left after uninstall:%s", s)
	}
	for _, f := range []string{"etc/systemd/system/skiff-agent.service", "usr/local/bin/skiff"} {
		if _, err := os.Stat(filepath.Join(root, f)); !os.IsNotExist(err) {
			t.Errorf("%s after uninstall: %v", f, err)
		}
	}
}
