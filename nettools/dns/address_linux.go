package dns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// HoldAddress puts ip as a host address (/32 or /128) on the loopback link
// of the network namespace at netnsPath (this process's when empty), so
// that the DNS server can bind it and packets from pods, routed into the
// node's namespace through the pod bridge, are delivered locally. Holding
// an address that is already there is not an error. The address is left in
// place when the agent stops (a restarted agent finds it).
func HoldAddress(netnsPath, ip string) error {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return fmt.Errorf("cluster DNS address: %w", err)
	}
	h, err := handle(netnsPath)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("loopback link: %w", err)
	}
	if err := h.AddrAdd(lo, hostAddr(a)); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add %s to lo: %w", a, err)
	}
	return nil
}

// ReleaseAddress removes an address HoldAddress added.
func ReleaseAddress(netnsPath, ip string) error {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return err
	}
	h, err := handle(netnsPath)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := h.AddrDel(lo, hostAddr(a)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("remove %s from lo: %w", a, err)
	}
	return nil
}

func hostAddr(a netip.Addr) *netlink.Addr {
	bits := 32
	if a.Is6() {
		bits = 128
	}
	return &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, bits)}}
}

func handle(netnsPath string) (*netlink.Handle, error) {
	if netnsPath == "" {
		return netlink.NewHandle()
	}
	ns, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", netnsPath, err)
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns)
}
