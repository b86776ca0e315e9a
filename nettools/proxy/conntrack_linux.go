package proxy

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// deleteFlows deletes the conntrack entries of flows in the namespace at
// path ("" = the current one).
func deleteFlows(path string, flows []StaleFlow) error {
	if len(flows) == 0 {
		return nil
	}
	var h *netlink.Handle
	var err error
	if path == "" {
		h, err = netlink.NewHandle(unix.NETLINK_NETFILTER)
	} else {
		var ns netns.NsHandle
		if ns, err = netns.GetFromPath(path); err != nil {
			return err
		}
		defer ns.Close()
		h, err = netlink.NewHandleAt(ns, unix.NETLINK_NETFILTER)
	}
	if err != nil {
		return fmt.Errorf("conntrack: %w", err)
	}
	defer h.Close()
	var filters []netlink.CustomConntrackFilter
	for _, f := range flows {
		cf := &netlink.ConntrackFilter{}
		if err := cf.AddProtocol(unix.IPPROTO_UDP); err != nil {
			return err
		}
		if err := cf.AddPort(netlink.ConntrackOrigDstPort, f.DstPort); err != nil {
			return err
		}
		if f.Dst.IsValid() {
			if err := cf.AddIP(netlink.ConntrackOrigDstIP, f.Dst.AsSlice()); err != nil {
				return err
			}
		}
		if f.Endpoint.IsValid() {
			if err := cf.AddIP(netlink.ConntrackReplySrcIP, f.Endpoint.AsSlice()); err != nil {
				return err
			}
		}
		filters = append(filters, cf)
	}
	if _, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, filters...); err != nil {
		return fmt.Errorf("conntrack: delete stale UDP flows: %w", err)
	}
	return nil
}
