package testutil

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/skiff-io/skiff/nettools/nft"
)

// lossTable is the nftables table Loss keeps in a host's namespace.
const lossTable = "skiff_test_loss"

// Loss makes host h drop percent % of the packets it receives from the
// test network, at random (an nftables rule in h's own namespace: numgen
// random, as netem is not in every kernel); 0 removes the rule. Packets on
// h's loopback are not dropped.
func (tn *TestNet) Loss(h *NetHost, percent int) error {
	if percent < 0 || percent > 100 {
		return fmt.Errorf("loss %d%%: want 0 to 100", percent)
	}
	c, closeNS, err := nft.Dial("/run/netns/" + h.Netns)
	if err != nil {
		return err
	}
	defer closeNS()
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: lossTable}
	if percent == 0 {
		return nft.DeleteTable(c, t)
	}
	return nft.ReplaceTable(c, t, func(t *nftables.Table) error {
		prio := nftables.ChainPriorityFilter
		policy := nftables.ChainPolicyAccept
		ch := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: prio, Policy: &policy})
		// The numbers below percent: a random number mod 100 found in it
		// drops the packet.
		lossy := &nftables.Set{Table: t, Name: "lossy", Anonymous: true, Constant: true, KeyType: nftables.TypeInteger}
		elems := make([]nftables.SetElement, percent)
		for i := range elems {
			elems[i] = nftables.SetElement{Key: binaryutil.NativeEndian.PutUint32(uint32(i))}
		}
		if err := c.AddSet(lossy, elems); err != nil {
			return err
		}
		ifname := make([]byte, unix.IFNAMSIZ)
		copy(ifname, h.Dev)
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname},
			&expr.Numgen{Register: 1, Modulus: 100, Type: unix.NFT_NG_RANDOM},
			&expr.Lookup{SourceRegister: 1, SetName: lossy.Name, SetID: lossy.ID},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
		return nil
	})
}
