package server

import (
	"net/netip"
	"testing"
)

func TestNextFreeCIDR(t *testing.T) {
	cluster := netip.MustParsePrefix("10.42.0.0/16")
	used := map[netip.Prefix]bool{}
	for i, want := range []string{"10.42.0.0/24", "10.42.1.0/24", "10.42.2.0/24"} {
		got, ok := nextFreeCIDR(cluster, used)
		if !ok || got.String() != want {
			t.Fatalf("allocation %d = %v %v, want %s", i, got, ok, want)
		}
		used[got] = true
	}
	delete(used, netip.MustParsePrefix("10.42.1.0/24"))
	if got, _ := nextFreeCIDR(cluster, used); got.String() != "10.42.1.0/24" {
		t.Errorf("freed CIDR not reused: %v", got)
	}
	small := netip.MustParsePrefix("10.9.8.0/23")
	used = map[netip.Prefix]bool{netip.MustParsePrefix("10.9.8.0/24"): true, netip.MustParsePrefix("10.9.9.0/24"): true}
	if _, ok := nextFreeCIDR(small, used); ok {
		t.Errorf("exhausted range gave a CIDR")
	}
}
