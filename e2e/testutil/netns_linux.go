package testutil

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// A TestNet is a Linux bridge with no uplink and one network namespace per
// host, each joined to the bridge by a veth pair, made for one test (root
// only). The bridge holds an address in the root namespace, so the test
// process reaches every host; hosts reach each other and the test, nothing
// else. Every name starts with a per-test prefix; Close (run by t.Cleanup)
// deletes the namespaces and the bridge, which takes the veths with them.
//
// Partitions are made with permanent neighbour entries pointing at a MAC
// address nobody has, inside the hosts' own namespaces: packets between cut
// hosts are dropped silently (as a real partition drops them, with
// timeouts, not refusals), while the test keeps reaching every host.
// (netem and the tc drop actions are not in every kernel; neighbour
// entries are.)
type TestNet struct {
	t      TB
	Prefix string // e.g. sk1a2b3c: interface names are Prefix+suffix (≤ 15 bytes)
	Bridge string
	// GatewayIP is the bridge's address in the root namespace.
	GatewayIP string
	subnet    string // "198.18.7." style prefix of the /24

	mu     sync.Mutex
	hosts  []*NetHost
	cut    map[[2]int]bool
	closed bool
}

// NetHost is one network namespace on a TestNet.
type NetHost struct {
	Index int
	Netns string // namespace name
	IP    string
	Dev   string // the veth inside the namespace
	MAC   string
}

// Namespace and bridge names carry this mark and the creating process's
// PID, so that a later run can remove what a killed run left behind.
const netMark = "skiffchaos"

// blackholeMAC is the address cut hosts send each other's packets to: a
// locally administered address no interface has.
const blackholeMAC = "02:00:5e:00:de:ad"

// HaveNetns reports whether this process can make test networks (root and
// the ip tool).
func HaveNetns() (bool, string) {
	if os.Geteuid() != 0 {
		return false, "network namespaces need root"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return false, "the ip tool (iproute2) is not installed"
	}
	return true, ""
}

// NewTestNet makes a bridge and n hosts. It fails the test if it cannot.
func NewTestNet(t TB, n int) *TestNet {
	t.Helper()
	if ok, why := HaveNetns(); !ok {
		t.Fatalf("test network: %s", why)
	}
	sweepStaleNets(t)
	var b [3]byte
	_, _ = rand.Read(b[:])
	tn := &TestNet{t: t, Prefix: "sk" + hex.EncodeToString(b[:]), cut: map[[2]int]bool{}}
	tn.Bridge = tn.Prefix + "br"
	t.Cleanup(tn.Close)

	// Choose a /24 of 198.18.0.0/15 (RFC 2544, for tests) that no
	// interface or route here uses, under a lock so that parallel runs
	// choose different ones.
	unlock := lockFile(filepath.Join(os.TempDir(), netMark+".lock"))
	defer unlock()
	subnet, err := freeSubnet()
	if err != nil {
		t.Fatalf("test network: %v", err)
	}
	tn.subnet = subnet
	tn.GatewayIP = subnet + "1"
	if err := runAll(
		[]string{"link", "add", tn.Bridge, "type", "bridge"},
		[]string{"link", "set", tn.Bridge, "alias", fmt.Sprintf("%s-%d", netMark, os.Getpid())},
		[]string{"addr", "add", tn.GatewayIP + "/24", "dev", tn.Bridge},
		[]string{"link", "set", tn.Bridge, "up"},
	); err != nil {
		t.Fatalf("test network: %v", err)
	}
	for i := 0; i < n; i++ {
		tn.AddHost()
	}
	return tn
}

// AddHost adds a host (namespace, veth, address) to the network.
func (tn *TestNet) AddHost() *NetHost {
	tn.t.Helper()
	tn.mu.Lock()
	defer tn.mu.Unlock()
	i := len(tn.hosts)
	if i >= 250 {
		tn.t.Fatalf("test network: too many hosts")
	}
	h := &NetHost{
		Index: i,
		Netns: fmt.Sprintf("%s-%d-%s-%d", netMark, os.Getpid(), tn.Prefix, i),
		IP:    tn.subnet + strconv.Itoa(i+2),
		Dev:   "eth0",
	}
	outer := fmt.Sprintf("%sh%d", tn.Prefix, i)
	ns := []string{"-n", h.Netns}
	if err := runAll(
		[]string{"netns", "add", h.Netns},
		[]string{"link", "add", outer, "type", "veth", "peer", "name", h.Dev, "netns", h.Netns},
		[]string{"link", "set", outer, "master", tn.Bridge, "up"},
		append(ns, "addr", "add", h.IP+"/24", "dev", h.Dev),
		append(ns, "link", "set", h.Dev, "up"),
		append(ns, "link", "set", "lo", "up"),
	); err != nil {
		tn.t.Fatalf("test network host %d: %v", i, err)
	}
	out, err := ipCmd(append(ns, "-o", "link", "show", h.Dev)...)
	if err != nil {
		tn.t.Fatalf("test network host %d: %v", i, err)
	}
	if f := strings.Fields(out); len(f) > 0 {
		for j := range f {
			if f[j] == "link/ether" && j+1 < len(f) {
				h.MAC = f[j+1]
			}
		}
	}
	tn.hosts = append(tn.hosts, h)
	return h
}

// Hosts returns the hosts in the order they were added.
func (tn *TestNet) Hosts() []*NetHost {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return append([]*NetHost(nil), tn.hosts...)
}

// Partition cuts every host in side off from every host not in it (both
// directions). Hosts on the same side, and the test process, still reach
// them.
func (tn *TestNet) Partition(side []*NetHost) error {
	in := map[int]bool{}
	for _, h := range side {
		in[h.Index] = true
	}
	for _, a := range tn.Hosts() {
		if !in[a.Index] {
			continue
		}
		for _, b := range tn.Hosts() {
			if in[b.Index] {
				continue
			}
			if err := tn.Cut(a, b); err != nil {
				return err
			}
		}
	}
	return nil
}

// Cut drops every packet between a and b.
func (tn *TestNet) Cut(a, b *NetHost) error {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	if err := runAll(
		[]string{"-n", a.Netns, "neigh", "replace", b.IP, "lladdr", blackholeMAC, "dev", a.Dev, "nud", "permanent"},
		[]string{"-n", b.Netns, "neigh", "replace", a.IP, "lladdr", blackholeMAC, "dev", b.Dev, "nud", "permanent"},
	); err != nil {
		return err
	}
	tn.cut[pair(a.Index, b.Index)] = true
	return nil
}

// Heal restores every cut link.
func (tn *TestNet) Heal() error {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	var errs []error
	for p := range tn.cut {
		a, b := tn.hosts[p[0]], tn.hosts[p[1]]
		// Deleting the entry makes the kernel resolve the address again.
		for _, args := range [][]string{
			{"-n", a.Netns, "neigh", "del", b.IP, "dev", a.Dev},
			{"-n", b.Netns, "neigh", "del", a.IP, "dev", b.Dev},
		} {
			if _, err := ipCmd(args...); err != nil && !strings.Contains(err.Error(), "No such file") {
				errs = append(errs, err)
			}
		}
		delete(tn.cut, p)
	}
	return errors.Join(errs...)
}

// Close deletes the namespaces (and with them the veths) and the bridge.
// Processes running in the namespaces must have been stopped first.
func (tn *TestNet) Close() {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	if tn.closed {
		return
	}
	tn.closed = true
	for _, h := range tn.hosts {
		if _, err := ipCmd("netns", "del", h.Netns); err != nil {
			tn.t.Logf("test network cleanup: %v", err)
		}
	}
	if _, err := ipCmd("link", "del", tn.Bridge); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
		tn.t.Logf("test network cleanup: %v", err)
	}
}

func pair(a, b int) [2]int {
	if a > b {
		a, b = b, a
	}
	return [2]int{a, b}
}

func ipCmd(args ...string) (string, error) {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func runAll(cmds ...[]string) error {
	for _, c := range cmds {
		if _, err := ipCmd(c...); err != nil {
			return err
		}
	}
	return nil
}

// freeSubnet returns "198.18.X." or "198.19.X." for a /24 that no address
// or route of the root namespace touches.
func freeSubnet() (string, error) {
	used := map[string]bool{}
	for _, args := range [][]string{{"-4", "-o", "addr", "show"}, {"-4", "route", "show", "table", "all"}} {
		out, err := ipCmd(args...)
		if err != nil {
			return "", err
		}
		for _, f := range strings.Fields(out) {
			ip, _, _ := strings.Cut(f, "/")
			if p := net.ParseIP(ip).To4(); p != nil && p[0] == 198 && (p[1] == 18 || p[1] == 19) {
				used[fmt.Sprintf("198.%d.%d.", p[1], p[2])] = true
			} else if p != nil && p[0] == 198 && p[1] == 18 && strings.HasSuffix(f, "/15") {
				return "", errors.New("198.18.0.0/15 is routed on this host")
			}
		}
	}
	var r [2]byte
	_, _ = rand.Read(r[:])
	start := int(r[0])<<8 | int(r[1])
	for i := 0; i < 512; i++ {
		k := (start + i) % 512
		s := fmt.Sprintf("198.%d.%d.", 18+k/256, k%256)
		if !used[s] {
			return s, nil
		}
	}
	return "", errors.New("no free /24 in 198.18.0.0/15")
}

// lockFile takes an exclusive flock on path and returns its release.
func lockFile(path string) func() {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return func() {}
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return func() {}
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }
}

// sweepStaleNets removes namespaces and bridges that a TestNet of a process
// that no longer exists left behind (a test binary killed by its timeout
// runs no cleanup). Only names carrying netMark and a dead PID are touched.
func sweepStaleNets(t TB) {
	dead := func(pid int) bool {
		return pid > 0 && pid != os.Getpid() && syscall.Kill(pid, 0) == syscall.ESRCH
	}
	if out, err := ipCmd("netns", "list"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || !strings.HasPrefix(f[0], netMark+"-") {
				continue
			}
			parts := strings.Split(f[0], "-")
			if pid, err := strconv.Atoi(parts[1]); err == nil && dead(pid) {
				if _, err := ipCmd("netns", "del", f[0]); err == nil {
					t.Logf("removed stale test namespace %s", f[0])
				}
			}
		}
	}
	if out, err := ipCmd("-o", "link", "show", "type", "bridge"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			i := strings.Index(line, "alias "+netMark+"-")
			if i < 0 {
				continue
			}
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name := strings.TrimSuffix(f[1], ":")
			pidStr := strings.Fields(line[i+len("alias "+netMark+"-"):])[0]
			if pid, err := strconv.Atoi(pidStr); err == nil && dead(pid) {
				if _, err := ipCmd("link", "del", name); err == nil {
					t.Logf("removed stale test bridge %s", name)
				}
			}
		}
	}
}
