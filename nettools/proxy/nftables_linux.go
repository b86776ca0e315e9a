package proxy

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-io/skiff/nettools"
)

// nftBackend programs the proxy's table: every sync replaces the whole
// table in one netlink transaction (add table, delete it, add it with its
// contents), so packets see the old rules or the new ones, never a mix.
type nftBackend struct {
	netns   string // "" = the current network namespace
	balance Balance
	last    *Ruleset
	// lastText is each chain of last in nft syntax (what update compares).
	lastText map[string]string
	// model is the last model synced (stale UDP flows are found by
	// comparing with it).
	model *Model
	// forwarding is set once net.ipv4.ip_forward is on.
	forwarding bool
}

// socketBuffer is the netlink socket's send and receive buffer: one
// transaction carries the whole table (about 3 MB for 1,000 Services of 10
// endpoints), far more than the default 208 KiB.
const socketBuffer = 64 << 20

// bigBuffers raises the socket's buffers past net.core.{w,r}mem_max
// (SO_SNDBUFFORCE needs CAP_NET_ADMIN, which programming nftables needs
// anyway).
func bigBuffers(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, socketBuffer); serr != nil {
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketBuffer)
	})
	if err != nil {
		return err
	}
	return serr
}

func (b *nftBackend) conn() (*nftables.Conn, func(), error) {
	if b.netns == "" {
		c, err := nftables.New(nftables.WithSockOptions(bigBuffers))
		return c, func() {}, err
	}
	f, err := os.Open(b.netns)
	if err != nil {
		return nil, nil, err
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())), nftables.WithSockOptions(bigBuffers))
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return c, func() { f.Close() }, nil
}

// enableForwarding turns on IPv4 forwarding in the proxy's namespace:
// DNATed service traffic from pods is routed, even to an endpoint on the
// same bridge. It also turns on route_localnet on every interface (as
// kube-proxy does), so that node ports answer on 127.0.0.1: a packet from
// the loopback DNATed to a pod would otherwise be dropped as martian when
// it leaves through the bridge or to another node. The filter-input chain
// drops every other packet to 127.0.0.0/8 arriving off lo.
func (b *nftBackend) enableForwarding() error {
	write := func() error {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
			return err
		}
		return os.WriteFile("/proc/sys/net/ipv4/conf/all/route_localnet", []byte("1"), 0o644)
	}
	if b.netns == "" {
		return write()
	}
	return nettools.Do(b.netns, write)
}

// Sync programs m. The first sync (and any after a failed one) replaces
// the whole table; later ones change only the chains and sets that differ
// from the last sync, in one transaction too, so that a change to one
// Service costs a few netlink messages and the affinity sets of the others
// keep their entries.
func (b *nftBackend) Sync(m *Model) error {
	if !b.forwarding {
		if err := b.enableForwarding(); err != nil {
			return fmt.Errorf("enable IPv4 forwarding: %w", err)
		}
		b.forwarding = true
	}
	rs := Rules(m, b.balance)
	if b.last != nil {
		var text map[string]string
		err := b.apply(func(c *nftables.Conn, t *nftables.Table) error {
			var err error
			text, err = update(c, t, b.last, b.lastText, rs)
			return err
		})
		if err == nil {
			b.last, b.lastText = rs, text
			return b.flushStale(m)
		}
		// Out of step with the kernel (someone changed the table), or a
		// change update does not do: start over with a full replacement.
		b.last = nil
	}
	err := b.apply(func(c *nftables.Conn, t *nftables.Table) error {
		c.AddTable(t)
		c.DelTable(t)
		return program(c, c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: TableName}), rs)
	})
	if err != nil {
		return fmt.Errorf("nftables: replace table %s: %w", TableName, err)
	}
	b.last, b.lastText = rs, nil
	return b.flushStale(m)
}

// flushStale deletes the conntrack entries of UDP flows made stale by the
// change from the last model to m.
func (b *nftBackend) flushStale(m *Model) error {
	flows := StaleUDP(b.model, m)
	b.model = m
	return deleteFlows(b.netns, flows)
}

// apply queues fn's messages and sends them as one transaction.
func (b *nftBackend) apply(fn func(*nftables.Conn, *nftables.Table) error) error {
	c, done, err := b.conn()
	if err != nil {
		return err
	}
	defer done()
	if err := fn(c, &nftables.Table{Family: nftables.TableFamilyIPv4, Name: TableName}); err != nil {
		return err
	}
	return c.Flush()
}

// chainText is a chain's rules in nft syntax, to compare two syncs.
func chainText(ch Chain, balance Balance) string {
	var sb strings.Builder
	for _, r := range ch.Rules {
		sb.WriteString(r.String(balance))
		sb.WriteByte('\n')
	}
	return sb.String()
}

// update queues the changes from old to rs: new sets and chains first,
// then changed chains flushed and refilled, then removed chains and sets
// (nothing refers to them any more) flushed and deleted.
func update(c *nftables.Conn, t *nftables.Table, old *Ruleset, oldChains map[string]string, rs *Ruleset) (map[string]string, error) {
	if oldChains == nil {
		oldChains = map[string]string{}
		for _, ch := range old.Chains {
			oldChains[ch.Name] = chainText(ch, old.Balance)
		}
	}
	texts := make(map[string]string, len(rs.Chains))
	oldSets := map[string]AffinitySet{}
	for _, s := range old.Sets {
		oldSets[s.Name] = s
	}
	sets := map[string]*nftables.Set{}
	wantSets := map[string]bool{}
	for _, s := range rs.Sets {
		wantSets[s.Name] = true
		set := &nftables.Set{Table: t, Name: s.Name, KeyType: nftables.TypeIPAddr, HasTimeout: true, Dynamic: true,
			Timeout: time.Duration(s.Timeout) * time.Second}
		if o, ok := oldSets[s.Name]; ok && o.Timeout != s.Timeout {
			return nil, fmt.Errorf("nftables: set %s changed its timeout", s.Name) // full replacement
		} else if !ok {
			if err := c.AddSet(set, nil); err != nil {
				return nil, fmt.Errorf("nftables: set %s: %w", s.Name, err)
			}
		}
		sets[s.Name] = set
	}
	want := map[string]bool{}
	var changed []Chain
	for _, ch := range rs.Chains {
		want[ch.Name] = true
		prev, ok := oldChains[ch.Name]
		text := chainText(ch, rs.Balance)
		texts[ch.Name] = text
		if ok && prev == text {
			continue
		}
		nc := &nftables.Chain{Name: ch.Name, Table: t}
		if ok {
			if ch.Hook != nil {
				return nil, fmt.Errorf("nftables: base chain %s changed", ch.Name) // never: full replacement
			}
			c.FlushChain(nc)
		} else {
			if ch.Hook != nil {
				return nil, fmt.Errorf("nftables: new base chain %s", ch.Name)
			}
			c.AddChain(nc)
		}
		changed = append(changed, ch)
	}
	for _, ch := range changed {
		nc := &nftables.Chain{Name: ch.Name, Table: t}
		for _, r := range ch.Rules {
			exprs, err := ruleExprs(c, t, r, rs.Balance, sets)
			if err != nil {
				return nil, fmt.Errorf("nftables: chain %s: %w", ch.Name, err)
			}
			c.AddRule(&nftables.Rule{Table: t, Chain: nc, Exprs: exprs})
		}
	}
	for _, ch := range old.Chains {
		if !want[ch.Name] {
			c.FlushChain(&nftables.Chain{Name: ch.Name, Table: t})
		}
	}
	for _, ch := range old.Chains {
		if !want[ch.Name] {
			c.DelChain(&nftables.Chain{Name: ch.Name, Table: t})
		}
	}
	for _, s := range old.Sets {
		if !wantSets[s.Name] {
			c.DelSet(&nftables.Set{Table: t, Name: s.Name})
		}
	}
	return texts, nil
}

// Cleanup deletes the table (when the proxy runs in another mode).
func (b *nftBackend) Cleanup() error {
	c, done, err := b.conn()
	if err != nil {
		return err
	}
	defer done()
	c.DelTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: TableName})
	if err := c.Flush(); err != nil && !errors.Is(err, syscall.ENOENT) {
		return err
	}
	return nil
}

func (b *nftBackend) Describe() string {
	if b.last == nil {
		return ""
	}
	return b.last.String()
}

var hooks = map[string]*nftables.ChainHook{
	"prerouting": nftables.ChainHookPrerouting, "output": nftables.ChainHookOutput,
	"postrouting": nftables.ChainHookPostrouting, "input": nftables.ChainHookInput,
	"forward": nftables.ChainHookForward,
}

func program(c *nftables.Conn, t *nftables.Table, rs *Ruleset) error {
	sets := map[string]*nftables.Set{}
	for _, s := range rs.Sets {
		set := &nftables.Set{Table: t, Name: s.Name, KeyType: nftables.TypeIPAddr, HasTimeout: true, Dynamic: true,
			Timeout: time.Duration(s.Timeout) * time.Second}
		if err := c.AddSet(set, nil); err != nil {
			return fmt.Errorf("nftables: set %s: %w", s.Name, err)
		}
		sets[s.Name] = set
	}
	chains := map[string]*nftables.Chain{}
	for _, ch := range rs.Chains {
		nc := &nftables.Chain{Name: ch.Name, Table: t}
		if h := ch.Hook; h != nil {
			nc.Hooknum = hooks[h.Hook]
			nc.Priority = nftables.ChainPriorityRef(nftables.ChainPriority(h.Priority))
			nc.Type = nftables.ChainTypeFilter
			if h.Type == "nat" {
				nc.Type = nftables.ChainTypeNAT
			}
			accept := nftables.ChainPolicyAccept
			nc.Policy = &accept
		}
		chains[ch.Name] = c.AddChain(nc)
	}
	for _, ch := range rs.Chains {
		for _, r := range ch.Rules {
			exprs, err := ruleExprs(c, t, r, rs.Balance, sets)
			if err != nil {
				return fmt.Errorf("nftables: chain %s: %w", ch.Name, err)
			}
			c.AddRule(&nftables.Rule{Table: t, Chain: chains[ch.Name], Exprs: exprs})
		}
	}
	return nil
}

func protoNum(p corev1.Protocol) byte {
	if p == corev1.ProtocolUDP {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}

func ruleExprs(c *nftables.Conn, t *nftables.Table, r Rule, balance Balance, sets map[string]*nftables.Set) ([]expr.Any, error) {
	var e []expr.Any
	m := r.Match
	if m.DAddr.IsValid() {
		a := m.DAddr.As4()
		e = append(e,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]})
	}
	if m.LocalDst {
		e = append(e,
			&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)})
	}
	if m.SAddrIn != "" {
		s, ok := sets[m.SAddrIn]
		if !ok {
			return nil, fmt.Errorf("no set %s", m.SAddrIn)
		}
		e = append(e,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID})
	}
	if m.Marked {
		e = append(e,
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(MasqueradeMark), Xor: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)})
	}
	if m.LoopbackSrc {
		e = append(e,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{127, 0, 0, 0}})
	}
	if m.Localnet {
		e = append(e,
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname("lo")},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{127, 0, 0, 0}},
			&expr.Ct{Key: expr.CtKeySTATUS, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(ctStatusDNAT), Xor: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)})
	}
	if m.Proto != "" {
		e = append(e,
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{protoNum(m.Proto)}})
	}
	if m.DPort != 0 {
		e = append(e,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(m.DPort)})
	}
	for _, s := range r.Do {
		switch s.Kind {
		case StmtJump:
			e = append(e, &expr.Verdict{Kind: expr.VerdictJump, Chain: s.Chain})
		case StmtGoto:
			e = append(e, &expr.Verdict{Kind: expr.VerdictGoto, Chain: s.Chain})
		case StmtMark:
			e = append(e,
				&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
					Mask: binaryutil.NativeEndian.PutUint32(^uint32(MasqueradeMark)),
					Xor:  binaryutil.NativeEndian.PutUint32(MasqueradeMark)},
				&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1})
		case StmtMasquerade:
			e = append(e, &expr.Masq{})
		case StmtDrop:
			e = append(e, &expr.Verdict{Kind: expr.VerdictDrop})
		case StmtDNAT:
			a := s.Endpoint.IP.As4()
			e = append(e,
				&expr.Immediate{Register: 1, Data: a[:]},
				&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(s.Endpoint.Port)},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true})
		case StmtReject:
			if s.Proto == corev1.ProtocolTCP {
				e = append(e, &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
			} else {
				e = append(e, &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3}) // port unreachable
			}
		case StmtUpdateSet:
			set, ok := sets[s.Set]
			if !ok {
				return nil, fmt.Errorf("no set %s", s.Set)
			}
			e = append(e,
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
				&expr.Dynset{SrcRegKey: 1, SetName: set.Name, SetID: set.ID, Operation: unix.NFT_DYNSET_OP_UPDATE,
					Timeout: set.Timeout})
		case StmtPick:
			vmap := &nftables.Set{Table: t, Anonymous: true, Constant: true, IsMap: true,
				KeyType: nftables.TypeInteger, DataType: nftables.TypeVerdict}
			elems := make([]nftables.SetElement, len(s.Chains))
			for i, ch := range s.Chains {
				elems[i] = nftables.SetElement{Key: binaryutil.NativeEndian.PutUint32(uint32(i)),
					VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: ch}}
			}
			if err := c.AddSet(vmap, elems); err != nil {
				return nil, err
			}
			gen := uint32(unix.NFT_NG_RANDOM)
			if balance == BalanceRoundRobin {
				gen = unix.NFT_NG_INCREMENTAL
			}
			e = append(e,
				&expr.Numgen{Register: 1, Modulus: uint32(len(s.Chains)), Type: gen},
				&expr.Lookup{SourceRegister: 1, DestRegister: 0, IsDestRegSet: true, SetName: vmap.Name, SetID: vmap.ID})
		}
	}
	return e, nil
}

// ifname is an interface name as nftables compares it (IFNAMSIZ bytes,
// NUL padded).
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

// ctStatusDNAT is conntrack's IPS_DST_NAT status bit (linux/netfilter/
// nf_conntrack_common.h): the connection was DNATed.
const ctStatusDNAT = 1 << 5
