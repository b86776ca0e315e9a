//go:build !linux

package testutil

// TestNet needs Linux network namespaces; elsewhere HaveNetns says no and
// NewTestNet fails the test.
type TestNet struct {
	Prefix, Bridge, GatewayIP string
}

// NetHost is one network namespace on a TestNet.
type NetHost struct {
	Index          int
	Netns, IP, Dev string
	MAC            string
}

// HaveNetns reports whether this process can make test networks.
func HaveNetns() (bool, string) { return false, "network namespaces need Linux" }

// NewTestNet fails: there are no network namespaces here.
func NewTestNet(t TB, n int) *TestNet {
	t.Fatalf("test network: network namespaces need Linux")
	return nil
}

func (tn *TestNet) AddHost() *NetHost               { return nil }
func (tn *TestNet) Hosts() []*NetHost               { return nil }
func (tn *TestNet) Partition(side []*NetHost) error { return nil }
func (tn *TestNet) Cut(a, b *NetHost) error         { return nil }
func (tn *TestNet) Heal() error                     { return nil }
func (tn *TestNet) Close()                          {}
