package routes

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/skiff-io/skiff/nettools"
	"github.com/skiff-io/skiff/nettools/nft"
)

// MasqTable is the nftables table holding the masquerade rule.
const MasqTable = "skiff-masq"

// Dataplane programs one node's side of the pod network in a network
// namespace: the VXLAN device, the routes, neighbour and forwarding
// entries to the other nodes, and the masquerade table. Its methods are
// idempotent and converge on the state given, removing what it owns and
// no longer wants; calls must not overlap.
type Dataplane struct {
	Backend     Backend
	NodeName    string
	NodeIP      netip.Addr
	ClusterCIDR netip.Prefix
	// NetNS is the node's network namespace as a path ("" for this
	// process's).
	NetNS  string
	Logger *slog.Logger
}

func (d *Dataplane) handle() (*netlink.Handle, error) {
	if d.NetNS == "" {
		return netlink.NewHandle()
	}
	ns, err := netns.GetFromPath(d.NetNS)
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", d.NetNS, err)
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns)
}

func (d *Dataplane) log() *slog.Logger {
	if d.Logger == nil {
		return slog.Default()
	}
	return d.Logger
}

// Setup enables forwarding and, for vxlan, makes the VXLAN device with the
// node's podCIDR network address (for host-gw it removes a device left by
// an earlier vxlan run). It returns the VTEP MAC (vxlan) or nil.
func (d *Dataplane) Setup(podCIDR netip.Prefix) (net.HardwareAddr, error) {
	if err := nettools.Sysctl(d.NetNS, "net/ipv4/ip_forward", "1"); err != nil {
		return nil, err
	}
	h, err := d.handle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	if d.Backend != VXLAN {
		if l, err := h.LinkByName(VXLANDevice); err == nil {
			if err := h.LinkDel(l); err != nil {
				return nil, fmt.Errorf("remove %s: %w", VXLANDevice, err)
			}
			d.log().Info("removed the VXLAN device (backend host-gw)")
		}
		return nil, nil
	}
	l, err := d.ensureVXLAN(h)
	if err != nil {
		return nil, err
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: podCIDR.Masked().Addr().AsSlice(), Mask: net.CIDRMask(32, 32)}}
	addrs, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	has := false
	for _, a := range addrs {
		if a.IPNet.String() == addr.IPNet.String() {
			has = true
			continue
		}
		if err := h.AddrDel(l, &a); err != nil {
			return nil, fmt.Errorf("stale address on %s: %w", VXLANDevice, err)
		}
	}
	if !has {
		if err := h.AddrAdd(l, addr); err != nil {
			return nil, fmt.Errorf("address %s on %s: %w", addr.IPNet, VXLANDevice, err)
		}
	}
	return l.Attrs().HardwareAddr, nil
}

// underlay is the link holding the node's IP.
func (d *Dataplane) underlay(h *netlink.Handle) (netlink.Link, error) {
	addrs, err := h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == d.NodeIP {
			return h.LinkByIndex(a.LinkIndex)
		}
	}
	return nil, fmt.Errorf("no interface holds the node IP %s", d.NodeIP)
}

// UnderlayMTU is the MTU of the interface holding the node IP.
func (d *Dataplane) UnderlayMTU() (int, error) {
	h, err := d.handle()
	if err != nil {
		return 0, err
	}
	defer h.Close()
	l, err := d.underlay(h)
	if err != nil {
		return 0, err
	}
	return l.Attrs().MTU, nil
}

func (d *Dataplane) ensureVXLAN(h *netlink.Handle) (netlink.Link, error) {
	under, err := d.underlay(h)
	if err != nil {
		return nil, err
	}
	want := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: VXLANDevice, MTU: under.Attrs().MTU - VXLANOverhead, HardwareAddr: VTEPMAC(d.NodeName)},
		VxlanId:   VXLANVNI, VtepDevIndex: under.Attrs().Index, SrcAddr: d.NodeIP.AsSlice(), Port: VXLANPort,
		Learning: false,
	}
	if l, err := h.LinkByName(VXLANDevice); err == nil {
		v, ok := l.(*netlink.Vxlan)
		if ok && v.VxlanId == want.VxlanId && v.Port == want.Port && v.VtepDevIndex == want.VtepDevIndex &&
			v.SrcAddr.Equal(want.SrcAddr) && v.HardwareAddr.String() == want.HardwareAddr.String() {
			if l.Attrs().MTU != want.MTU {
				if err := h.LinkSetMTU(l, want.MTU); err != nil {
					return nil, err
				}
			}
			if l.Attrs().Flags&net.FlagUp == 0 {
				if err := h.LinkSetUp(l); err != nil {
					return nil, err
				}
			}
			return l, nil
		}
		d.log().Info("replacing a VXLAN device with other settings", "device", VXLANDevice)
		if err := h.LinkDel(l); err != nil {
			return nil, err
		}
	}
	if err := h.LinkAdd(want); err != nil {
		return nil, fmt.Errorf("vxlan device: %w", err)
	}
	l, err := h.LinkByName(VXLANDevice)
	if err != nil {
		return nil, err
	}
	if err := h.LinkSetUp(l); err != nil {
		return nil, err
	}
	d.log().Info("created the VXLAN device", "device", VXLANDevice, "vtep-mac", want.HardwareAddr, "mtu", want.MTU, "underlay", under.Attrs().Name)
	return l, nil
}

// Sync makes the routes (and, for vxlan, neighbour and forwarding
// entries) to exactly the peers given.
func (d *Dataplane) Sync(peers []Peer) error {
	h, err := d.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	var vx netlink.Link
	if d.Backend == VXLAN {
		if vx, err = h.LinkByName(VXLANDevice); err != nil {
			return fmt.Errorf("vxlan device: %w", err)
		}
	}
	var errs []error
	want := map[string]bool{}
	wantGW := map[string]bool{}
	wantMAC := map[string]bool{}
	for _, p := range peers {
		dst := &net.IPNet{IP: p.PodCIDR.Addr().AsSlice(), Mask: net.CIDRMask(p.PodCIDR.Bits(), 32)}
		want[dst.String()] = true
		r := &netlink.Route{Dst: dst, Protocol: RouteProtocol}
		if d.Backend == HostGW {
			r.Gw = p.NodeIP.AsSlice()
		} else {
			gw := p.Gateway().AsSlice()
			wantGW[p.Gateway().String()] = true
			wantMAC[p.VTEPMAC.String()] = true
			idx := vx.Attrs().Index
			if err := h.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
				Type: unix.RTN_UNICAST, IP: gw, HardwareAddr: p.VTEPMAC}); err != nil {
				errs = append(errs, fmt.Errorf("neighbour %s of %s: %w", gw, p.Name, err))
				continue
			}
			if err := h.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT,
				Flags: netlink.NTF_SELF, IP: p.NodeIP.AsSlice(), HardwareAddr: p.VTEPMAC}); err != nil {
				errs = append(errs, fmt.Errorf("fdb entry of %s: %w", p.Name, err))
				continue
			}
			r.Gw, r.LinkIndex, r.Flags = gw, idx, int(netlink.FLAG_ONLINK)
		}
		if err := h.RouteReplace(r); err != nil {
			errs = append(errs, fmt.Errorf("route to %s (%s): %w", p.Name, p.PodCIDR, err))
		}
	}
	// Remove what this package made and no longer wants.
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, r := range routes {
		if r.Dst != nil && !want[r.Dst.String()] {
			if err := h.RouteDel(&r); err != nil {
				errs = append(errs, fmt.Errorf("stale route %s: %w", r.Dst, err))
			} else {
				d.log().Info("removed route to a node gone", "dst", r.Dst)
			}
		}
	}
	if vx != nil {
		neighs, err := h.NeighList(vx.Attrs().Index, unix.AF_INET)
		if err != nil {
			errs = append(errs, err)
		}
		for _, n := range neighs {
			if n.State == netlink.NUD_PERMANENT && !wantGW[n.IP.String()] {
				if err := h.NeighDel(&n); err != nil {
					errs = append(errs, err)
				}
			}
		}
		fdb, err := h.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
		if err != nil {
			errs = append(errs, err)
		}
		for _, n := range fdb {
			if n.IP != nil && !wantMAC[n.HardwareAddr.String()] {
				n.Family, n.Flags = unix.AF_BRIDGE, netlink.NTF_SELF
				if err := h.NeighDel(&n); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// SyncMasquerade replaces the masquerade table: packets from the cluster
// CIDR to the cluster CIDR keep their source; to anywhere else but
// multicast they leave with the node's address.
func (d *Dataplane) SyncMasquerade() error {
	c, done, err := nft.Dial(d.NetNS)
	if err != nil {
		return err
	}
	defer done()
	cluster := d.ClusterCIDR.Masked()
	return nft.ReplaceTable(c, &nftables.Table{Family: nftables.TableFamilyIPv4, Name: MasqTable}, func(t *nftables.Table) error {
		ch := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: nft.Rule(
			nft.Prefix(nft.Saddr, cluster, false), nft.Prefix(nft.Daddr, cluster, false),
			[]expr.Any{nft.Verdict(expr.VerdictReturn, "")})})
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: nft.Rule(
			nft.Prefix(nft.Saddr, cluster, false), nft.Prefix(nft.Daddr, netip.MustParsePrefix("224.0.0.0/4"), true),
			[]expr.Any{&expr.Masq{FullyRandom: true}})})
		return nil
	})
}

// Cleanup removes the masquerade table (a clean shutdown). Routes stay, so
// that pods keep reaching each other while the agent restarts.
func (d *Dataplane) Cleanup() error {
	c, done, err := nft.Dial(d.NetNS)
	if err != nil {
		return err
	}
	defer done()
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: MasqTable}
	ok, err := nft.TableExists(c, t.Family, t.Name)
	if err != nil || !ok {
		return err
	}
	return nft.DeleteTable(c, t)
}
