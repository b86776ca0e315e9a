package server

import (
	"testing"
	"time"

	"github.com/skiff-io/skiff/gossip"
)

func TestDeadServerToRemove(t *testing.T) {
	now := time.Now()
	alive := func(n string) gossip.Member { return gossip.Member{Name: n, Status: gossip.StatusAlive} }
	failed := func(n string, ago time.Duration) gossip.Member {
		return gossip.Member{Name: n, Status: gossip.StatusFailed, Since: now.Add(-ago)}
	}
	ms := func(list ...gossip.Member) map[string]gossip.Member {
		out := map[string]gossip.Member{}
		for _, m := range list {
			out[m.Name] = m
		}
		return out
	}
	cases := []struct {
		name    string
		voters  []string
		members map[string]gossip.Member
		want    string
	}{
		{"3 voters, one long dead: removed", []string{"m1", "m2", "m3"}, ms(alive("m1"), alive("m2"), failed("m3", time.Hour)), "m3"},
		{"recently failed: kept", []string{"m1", "m2", "m3"}, ms(alive("m1"), alive("m2"), failed("m3", time.Second)), ""},
		{"two dead of three: the rest would have no alive majority", []string{"m1", "m2", "m3"}, ms(alive("m1"), failed("m2", time.Hour), failed("m3", time.Hour)), ""},
		{"5 voters, two dead: one removed (3 of 4 alive)", []string{"m1", "m2", "m3", "m4", "m5"},
			ms(alive("m1"), alive("m2"), alive("m3"), failed("m4", time.Hour), failed("m5", time.Hour)), "m4"},
		{"self never", []string{"m1", "m2"}, ms(failed("m1", time.Hour), alive("m2")), ""},
		{"unknown to gossip: kept", []string{"m1", "m2", "m3"}, ms(alive("m1"), alive("m2")), ""},
	}
	for _, c := range cases {
		if got := deadServerToRemove(c.voters, c.members, "m1", time.Minute, now); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}
