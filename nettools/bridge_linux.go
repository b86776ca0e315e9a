// Package nettools is the node's pod network: a bridge (skiff0) in the
// node's network namespace, a veth pair per pod with its end in the pod's
// namespace as eth0, addresses from the node's pod CIDR kept in files so
// that restarts never hand one out twice, and a default route through the
// bridge. It touches only links it creates: the bridge it names and veths
// named sk<sandbox-id-prefix>.
package nettools

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// DefaultBridge is the name of the node's pod bridge.
const DefaultBridge = "skiff0"

// BridgeConfig configures a Bridge.
type BridgeConfig struct {
	// Name of the bridge, default skiff0.
	Name string
	// PodCIDR is the node's pod CIDR (a /24 from the cluster CIDR); it may
	// come later through SetPodCIDR.
	PodCIDR string
	// StateDir keeps address allocations: <data-dir>/agent/ipam.
	StateDir string
	// HostNetNS is the network namespace holding the bridge, as a path
	// (tests use a namespace of their own); empty for this process's.
	HostNetNS string
	// MTU of the bridge and veths; 0 for 1500.
	MTU int
	// RouteLocalnet sets route_localnet on the bridge, so that pods reach
	// a Service whose endpoint is on the node's loopback (the kubernetes
	// Service of a master bound to 127.0.0.1): the service proxy DNATs to
	// 127.0.0.1, which the kernel otherwise drops as martian. Only with a
	// proxy that drops every other packet to 127.0.0.0/8 arriving off lo
	// (the nftables proxy's filter-input chain), as kube-proxy does.
	RouteLocalnet bool
	// Logger, default slog.Default().
	Logger *slog.Logger
}

// Bridge connects pod network namespaces to a bridge. It implements
// runtime/libcontainer.Network.
type Bridge struct {
	cfg BridgeConfig
	log *slog.Logger

	mu     sync.Mutex
	prefix netip.Prefix
	// hairpinDone: the ports of pods set up by an older release have been
	// given hairpin mode (once per process).
	hairpinDone bool
}

// NewBridge returns a Bridge; nothing is created until the first SetUp.
func NewBridge(cfg BridgeConfig) (*Bridge, error) {
	if cfg.Name == "" {
		cfg.Name = DefaultBridge
	}
	if len(cfg.Name) > 15 {
		return nil, fmt.Errorf("bridge name %q longer than 15 bytes", cfg.Name)
	}
	if cfg.StateDir == "" {
		return nil, errors.New("bridge: no state dir")
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	b := &Bridge{cfg: cfg, log: cfg.Logger.With("component", "network", "bridge", cfg.Name)}
	if cfg.PodCIDR != "" {
		if err := b.SetPodCIDR(cfg.PodCIDR); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// SetPodCIDR sets the node's pod CIDR (an IPv4 prefix between /16 and /30).
func (b *Bridge) SetPodCIDR(cidr string) error {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return fmt.Errorf("pod CIDR: %w", err)
	}
	if !p.Addr().Is4() || p.Bits() < 16 || p.Bits() > 30 {
		return fmt.Errorf("pod CIDR %s: need an IPv4 prefix from /16 to /30", cidr)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.prefix = p.Masked()
	return nil
}

func (b *Bridge) ipam() *ipam {
	return &ipam{dir: filepath.Join(b.cfg.StateDir, b.cfg.Name), prefix: b.prefix}
}

// vethName is the host end of a sandbox's veth pair.
func vethName(sandboxID string) string {
	id := sandboxID
	if len(id) > 12 {
		id = id[:12]
	}
	return "sk" + id
}

func (b *Bridge) hostHandle() (*netlink.Handle, error) {
	if b.cfg.HostNetNS == "" {
		return netlink.NewHandle()
	}
	ns, err := netns.GetFromPath(b.cfg.HostNetNS)
	if err != nil {
		return nil, fmt.Errorf("host netns: %w", err)
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns)
}

// SetUp gives the pod namespace eth0 with an address of the pod CIDR and a
// default route via the bridge, creating the bridge if needed.
func (b *Bridge) SetUp(ctx context.Context, sandboxID, netnsPath string, _ *runtimeapi.PodSandboxConfig) (_ []string, retErr error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.prefix.IsValid() {
		return nil, errors.New("the node has no pod CIDR yet")
	}
	host, err := b.hostHandle()
	if err != nil {
		return nil, err
	}
	defer host.Close()
	br, err := b.ensureBridge(host)
	if err != nil {
		return nil, err
	}
	pool := b.ipam()
	addr, err := pool.allocate(sandboxID)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			if l, err := host.LinkByName(vethName(sandboxID)); err == nil {
				_ = host.LinkDel(l)
			}
			_ = pool.release(sandboxID)
		}
	}()

	podNS, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return nil, fmt.Errorf("pod netns: %w", err)
	}
	defer podNS.Close()
	pod, err := netlink.NewHandleAt(podNS)
	if err != nil {
		return nil, err
	}
	defer pod.Close()

	name := vethName(sandboxID)
	if old, err := host.LinkByName(name); err == nil {
		// Left by an interrupted SetUp of the same sandbox.
		if err := host.LinkDel(old); err != nil {
			return nil, err
		}
	}
	if old, err := pod.LinkByName("eth0"); err == nil {
		if err := pod.LinkDel(old); err != nil {
			return nil, err
		}
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: name, MTU: b.cfg.MTU, MasterIndex: br.Attrs().Index},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(podNS)),
	}
	if err := host.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("veth %s: %w", name, err)
	}
	hostEnd, err := host.LinkByName(name)
	if err != nil {
		return nil, err
	}
	// Hairpin: with br_netfilter on (the network policy controller turns
	// it on), a pod's packet to its own Service is DNATed back to the pod
	// inside the bridge, which sends a frame out of the port it came in
	// by only in hairpin mode.
	if err := host.LinkSetHairpin(hostEnd, true); err != nil {
		return nil, fmt.Errorf("veth %s hairpin mode: %w", name, err)
	}
	if err := host.LinkSetUp(hostEnd); err != nil {
		return nil, err
	}
	if lo, err := pod.LinkByName("lo"); err == nil {
		if err := pod.LinkSetUp(lo); err != nil {
			return nil, err
		}
	}
	eth0, err := pod.LinkByName("eth0")
	if err != nil {
		return nil, err
	}
	ipnet := &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(b.prefix.Bits(), 32)}
	if err := pod.AddrAdd(eth0, &netlink.Addr{IPNet: ipnet}); err != nil {
		return nil, fmt.Errorf("pod address: %w", err)
	}
	if err := pod.LinkSetUp(eth0); err != nil {
		return nil, err
	}
	gw := pool.gateway()
	if err := pod.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: gw.AsSlice(), Dst: nil}); err != nil {
		return nil, fmt.Errorf("default route: %w", err)
	}
	b.log.Debug("pod network up", "sandbox", sandboxID, "ip", addr)
	return []string{addr.String()}, nil
}

// ensureBridge creates the bridge with the gateway address, or checks the
// existing one.
func (b *Bridge) ensureBridge(host *netlink.Handle) (netlink.Link, error) {
	gw := &netlink.Addr{IPNet: &net.IPNet{IP: b.ipam().gateway().AsSlice(), Mask: net.CIDRMask(b.prefix.Bits(), 32)}}
	l, err := host.LinkByName(b.cfg.Name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return nil, err
		}
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: b.cfg.Name, MTU: b.cfg.MTU}}
		if err := host.LinkAdd(br); err != nil {
			return nil, fmt.Errorf("bridge %s: %w", b.cfg.Name, err)
		}
		if l, err = host.LinkByName(b.cfg.Name); err != nil {
			return nil, err
		}
		b.log.Info("created pod bridge", "gateway", gw.IPNet)
	} else if l.Type() != "bridge" {
		return nil, fmt.Errorf("link %s exists and is not a bridge (%s)", b.cfg.Name, l.Type())
	}
	addrs, err := host.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	has := false
	for _, a := range addrs {
		if a.IPNet.String() == gw.IPNet.String() {
			has = true
		}
	}
	if !has {
		if err := host.AddrAdd(l, gw); err != nil {
			return nil, fmt.Errorf("bridge address %s: %w", gw.IPNet, err)
		}
	}
	if l.Attrs().OperState != netlink.OperUp {
		if err := host.LinkSetUp(l); err != nil {
			return nil, err
		}
	}
	if b.cfg.RouteLocalnet {
		if err := Sysctl(b.cfg.HostNetNS, "net/ipv4/conf/"+b.cfg.Name+"/route_localnet", "1"); err != nil {
			return nil, fmt.Errorf("bridge %s: %w", b.cfg.Name, err)
		}
	}
	if !b.hairpinDone {
		if err := b.hairpinAll(host, l); err != nil {
			return nil, err
		}
		b.hairpinDone = true
	}
	return l, nil
}

// hairpinAll turns hairpin mode on for every pod port of the bridge (pods
// set up before SetUp did it keep running across agent upgrades).
func (b *Bridge) hairpinAll(host *netlink.Handle, br netlink.Link) error {
	links, err := host.LinkList()
	if err != nil {
		return err
	}
	for _, l := range links {
		a := l.Attrs()
		if a.MasterIndex != br.Attrs().Index || !strings.HasPrefix(a.Name, "sk") || l.Type() != "veth" {
			continue
		}
		if a.Protinfo != nil && a.Protinfo.Hairpin {
			continue
		}
		if err := host.LinkSetHairpin(l, true); err != nil {
			return fmt.Errorf("veth %s hairpin mode: %w", a.Name, err)
		}
	}
	return nil
}

// TearDown deletes the sandbox's veth pair and releases its address. It is
// idempotent, and works when the pod namespace is already gone.
func (b *Bridge) TearDown(ctx context.Context, sandboxID, netnsPath string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	host, err := b.hostHandle()
	if err != nil {
		return err
	}
	defer host.Close()
	if l, err := host.LinkByName(vethName(sandboxID)); err == nil {
		if err := host.LinkDel(l); err != nil {
			return fmt.Errorf("delete veth: %w", err)
		}
	}
	// Addresses are released by owner, whatever the current prefix.
	return releaseAll(filepath.Join(b.cfg.StateDir, b.cfg.Name), sandboxID)
}

// releaseAll removes the allocation files owned by owner in dir.
func releaseAll(dir, owner string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if _, err := netip.ParseAddr(e.Name()); err != nil {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if c, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(c)) == owner {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Allocated lists the addresses in use and their sandboxes.
func (b *Bridge) Allocated() (map[string]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, err := (&ipam{dir: filepath.Join(b.cfg.StateDir, b.cfg.Name)}).allocated()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for a, o := range m {
		out[a.String()] = o
	}
	return out, nil
}
