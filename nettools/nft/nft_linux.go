// Package nft holds the small pieces of google/nftables that Skiff's rule
// sets share: a connection into a given network namespace, the atomic
// replacement of a whole table, and expression builders for the matches
// the pod network and NetworkPolicy rules use (IPv4 prefixes, transport
// ports, conntrack state). The kernel's nf_tables is driven over netlink;
// no nft or iptables binary is needed.
package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Dial opens a connection to nf_tables in the network namespace at nsPath
// ("" for the calling process's namespace). The caller closes the
// returned namespace handle, if any, with the connection.
func Dial(nsPath string) (*nftables.Conn, func(), error) {
	opts := []nftables.ConnOption{nftables.WithSockOptions(bigBuffers)}
	if nsPath == "" {
		c, err := nftables.New(opts...)
		return c, func() {}, err
	}
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, nil, fmt.Errorf("netns %s: %w", nsPath, err)
	}
	c, err := nftables.New(append(opts, nftables.WithNetNSFd(int(ns)))...)
	if err != nil {
		ns.Close()
		return nil, nil, err
	}
	return c, func() { ns.Close() }, nil
}

// socketBuffer is the netlink socket's send and receive buffer: a batch
// goes to the kernel in one message, which must fit in the send buffer
// (the default, about 200 KiB, holds a few hundred rules), and its
// acknowledgements in the receive buffer.
const socketBuffer = 64 << 20

// bigBuffers sets the buffers, beyond net.core.[rw]mem_max when the
// process may (CAP_NET_ADMIN), else as far as the limit allows.
func bigBuffers(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = errors.Join(
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, socketBuffer),
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketBuffer))
	}); err != nil {
		return err
	}
	if serr != nil {
		return errors.Join(c.SetWriteBuffer(socketBuffer), c.SetReadBuffer(socketBuffer))
	}
	return nil
}

// ReplaceTable queues, on c, the deletion of table t with everything in
// it and its creation afresh; fill queues the table's chains, sets and
// rules. Nothing happens until c.Flush, which applies the whole batch as
// one transaction: packets see the old rule set or the new one, never a
// mix, and a failed batch leaves the old one.
func ReplaceTable(c *nftables.Conn, t *nftables.Table, fill func(*nftables.Table) error) error {
	// add-then-delete makes the delete valid whether or not the table
	// exists; the second add starts it empty.
	c.AddTable(t)
	c.DelTable(t)
	t = c.AddTable(t)
	if err := fill(t); err != nil {
		return err
	}
	return c.Flush()
}

// DeleteTable removes table t if it exists.
func DeleteTable(c *nftables.Conn, t *nftables.Table) error {
	c.AddTable(t)
	c.DelTable(t)
	return c.Flush()
}

// TableExists reports whether a table of that family and name exists.
func TableExists(c *nftables.Conn, family nftables.TableFamily, name string) (bool, error) {
	_, err := c.ListTableOfFamily(name, family)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	return false, err
}

// IPv4 matches IPv4 packets (needed before header loads in inet tables).
func IPv4() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
	}
}

// Field names an IPv4 header address.
type Field uint32

// Offsets of the addresses in the IPv4 header.
const (
	Saddr Field = 12
	Daddr Field = 16
)

// Prefix matches (or with neq, does not match) the IPv4 address field
// against prefix p.
func Prefix(f Field, p netip.Prefix, neq bool) []expr.Any {
	p = p.Masked()
	op := expr.CmpOpEq
	if neq {
		op = expr.CmpOpNeq
	}
	a := p.Addr().As4()
	out := []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: uint32(f), Len: 4}}
	if p.Bits() < 32 {
		m := binary.BigEndian.AppendUint32(nil, ^uint32(0)<<(32-p.Bits()))
		if p.Bits() == 0 {
			m = []byte{0, 0, 0, 0}
		}
		out = append(out, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: m, Xor: []byte{0, 0, 0, 0}})
	}
	return append(out, &expr.Cmp{Op: op, Register: 1, Data: a[:]})
}

// Addr matches the IPv4 address field against one address.
func Addr(f Field, a netip.Addr) []expr.Any {
	return Prefix(f, netip.PrefixFrom(a, 32), false)
}

// InSet matches the IPv4 address field against the addresses of set s
// (a set of ipv4_addr).
func InSet(f Field, s *nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: uint32(f), Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
	}
}

// VerdictMap jumps (or whatever verdict the element holds) through the
// verdict map m keyed by the IPv4 address field; no element, no verdict.
func VerdictMap(f Field, m *nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: uint32(f), Len: 4},
		&expr.Lookup{SourceRegister: 1, DestRegister: 0, IsDestRegSet: true, SetName: m.Name, SetID: m.ID},
	}
}

// L4Proto matches the transport protocol (unix.IPPROTO_TCP, _UDP, _SCTP).
func L4Proto(proto byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
	}
}

// DPort matches the transport destination port in [from, to] (TCP, UDP
// and SCTP keep it at offset 2); from == to matches one port.
func DPort(from, to uint16) []expr.Any {
	out := []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}}
	if from == to {
		return append(out, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, from)})
	}
	return append(out, &expr.Range{Op: expr.CmpOpEq, Register: 1,
		FromData: binary.BigEndian.AppendUint16(nil, from), ToData: binary.BigEndian.AppendUint16(nil, to)})
}

// CtState matches packets whose conntrack state has any of the bits
// (expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED...).
func CtState(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, bits), Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
	}
}

// Verdict ends a rule with kind (expr.VerdictAccept, VerdictDrop,
// VerdictReturn; VerdictJump and VerdictGoto take chain).
func Verdict(kind expr.VerdictKind, chain string) expr.Any {
	return &expr.Verdict{Kind: kind, Chain: chain}
}

// Rule concatenates match groups into one expression list.
func Rule(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
