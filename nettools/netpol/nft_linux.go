package netpol

import (
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/skiff-io/skiff/nettools"
	"github.com/skiff-io/skiff/nettools/nft"
)

// Table is the nftables table (family inet) holding the policy rules.
const Table = "skiff-netpol"

// bridgeNFSysctl makes bridged IPv4 traffic (same-node pod to pod) cross
// the inet hooks, so that the forward chain sees it.
const bridgeNFSysctl = "net/bridge/bridge-nf-call-iptables"

// EnableBridgeFiltering turns on br_netfilter for IPv4 in the node's
// namespace. Without it, the forward chain sees only routed traffic
// (across nodes), not traffic between pods of one node.
func EnableBridgeFiltering(nsPath string) error {
	err := nettools.Sysctl(nsPath, bridgeNFSysctl, "1")
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("br_netfilter is not available (no /proc/sys/%s): policies between pods of one node are not enforced", bridgeNFSysctl)
	}
	return err
}

// Program replaces the policy table of the namespace at nsPath ("" for
// this process's) with rules for rs, atomically.
func Program(nsPath string, rs []PodRules) error {
	c, done, err := nft.Dial(nsPath)
	if err != nil {
		return err
	}
	defer done()
	return nft.ReplaceTable(c, &nftables.Table{Family: nftables.TableFamilyINet, Name: Table}, func(t *nftables.Table) error {
		fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
		add := func(ch *nftables.Chain, parts ...[]expr.Any) {
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: nft.Rule(parts...)})
		}
		verdict := func(k expr.VerdictKind, chain string) []expr.Any { return []expr.Any{nft.Verdict(k, chain)} }
		add(fwd, nft.CtState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept, ""))
		// Per isolated pod, a chain of what it may send (receive); the
		// forward chain finds it through a verdict map keyed by the pod's
		// address, one lookup whatever the number of pods.
		var egress, ingress []nftables.SetElement
		for i, r := range rs {
			if !r.IP.Is4() {
				continue
			}
			key := r.IP.AsSlice()
			if r.EgressIsolated {
				name := fmt.Sprintf("egress-%d", i)
				ch := c.AddChain(&nftables.Chain{Name: name, Table: t})
				ms, err := matches(nft.Daddr, r.Egress, peerSets(c, t, name))
				if err != nil {
					return err
				}
				for _, m := range ms {
					add(ch, m, verdict(expr.VerdictReturn, ""))
				}
				add(ch, verdict(expr.VerdictDrop, ""))
				egress = append(egress, nftables.SetElement{Key: key, VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: name}})
			}
			if r.IngressIsolated {
				name := fmt.Sprintf("ingress-%d", i)
				ch := c.AddChain(&nftables.Chain{Name: name, Table: t})
				ms, err := matches(nft.Saddr, r.Ingress, peerSets(c, t, name))
				if err != nil {
					return err
				}
				for _, m := range ms {
					add(ch, m, verdict(expr.VerdictAccept, ""))
				}
				add(ch, verdict(expr.VerdictDrop, ""))
				ingress = append(ingress, nftables.SetElement{Key: key, VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: name}})
			}
		}
		for _, m := range []struct {
			name  string
			field nft.Field
			elems []nftables.SetElement
		}{{"egress-pods", nft.Saddr, egress}, {"ingress-pods", nft.Daddr, ingress}} {
			if len(m.elems) == 0 {
				continue
			}
			set := &nftables.Set{Table: t, Name: m.name, IsMap: true, KeyType: nftables.TypeIPAddr, DataType: nftables.TypeVerdict}
			if err := c.AddSet(set, m.elems); err != nil {
				return fmt.Errorf("verdict map %s: %w", m.name, err)
			}
			add(fwd, nft.IPv4(), nft.VerdictMap(m.field, set))
		}
		return nil
	})
}

// matches expands allows into rule matches (without verdict): one per
// peer and port range, where the pod addresses of an Allow (two or more)
// are one peer, a set made by newSet; the peer address is field (saddr for
// ingress, daddr for egress). The chains are reached from IPv4 rules
// only, so no protocol check is needed.
func matches(field nft.Field, allows []Allow, newSet func([]netip.Addr) (*nftables.Set, error)) ([][]expr.Any, error) {
	var out [][]expr.Any
	for _, a := range allows {
		peers := [][]expr.Any{nil}
		if !a.AnyPeer {
			peers = nil
			var hosts []netip.Addr
			for _, p := range a.Peers {
				if !p.Addr().Is4() {
					continue
				}
				if p.IsSingleIP() {
					hosts = append(hosts, p.Addr())
					continue
				}
				peers = append(peers, nft.Prefix(field, p, false))
			}
			switch {
			case len(hosts) == 1:
				peers = append(peers, nft.Addr(field, hosts[0]))
			case len(hosts) > 1:
				set, err := newSet(hosts)
				if err != nil {
					return nil, err
				}
				peers = append(peers, nft.InSet(field, set))
			}
		}
		ports := [][]expr.Any{nil}
		if !a.AllPorts {
			ports = nil
			for _, pr := range a.Ports {
				m := nft.L4Proto(pr.Proto)
				if pr.From != 0 {
					m = append(m, nft.DPort(pr.From, pr.To)...)
				}
				ports = append(ports, m)
			}
		}
		for _, pe := range peers {
			for _, po := range ports {
				out = append(out, nft.Rule(pe, po))
			}
		}
	}
	return out, nil
}

// peerSets makes the address sets of chain's rules: <chain>-peers-<n>.
func peerSets(c *nftables.Conn, t *nftables.Table, chain string) func([]netip.Addr) (*nftables.Set, error) {
	n := 0
	return func(addrs []netip.Addr) (*nftables.Set, error) {
		set := &nftables.Set{Table: t, Name: fmt.Sprintf("%s-peers-%d", chain, n), KeyType: nftables.TypeIPAddr}
		n++
		elems := make([]nftables.SetElement, 0, len(addrs))
		for _, a := range addrs {
			elems = append(elems, nftables.SetElement{Key: a.AsSlice()})
		}
		if err := c.AddSet(set, elems); err != nil {
			return nil, fmt.Errorf("set %s: %w", set.Name, err)
		}
		return set, nil
	}
}

// Remove deletes the policy table (tests; an agent keeps it over
// restarts so that policies stay enforced).
func Remove(nsPath string) error {
	c, done, err := nft.Dial(nsPath)
	if err != nil {
		return err
	}
	defer done()
	ok, err := nft.TableExists(c, nftables.TableFamilyINet, Table)
	if err != nil || !ok {
		return err
	}
	return nft.DeleteTable(c, &nftables.Table{Family: nftables.TableFamilyINet, Name: Table})
}
