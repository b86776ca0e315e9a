package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// upgradeFrom is the release a rolling upgrade starts from.
const upgradeFrom = testutil.UpgradeFrom

// TestRollingUpgrade (issue 18): a 3-master cluster of the previous
// release is upgraded one master at a time (SIGTERM, the new binary on the
// same data dir) under writes: it keeps serving, every acknowledged write
// is there at the end, no master turns corrupt, and encryption at rest
// starts only once every master runs the new release (before, an old
// master would misapply sealed entries).
func TestRollingUpgrade(t *testing.T) {
	old := testutil.BuildRelease(t, upgradeFrom)
	first := testutil.NewMaster(t, testutil.MasterOptions{Name: "m1", Binary: old})
	first.Start()
	first.WaitReady(30 * time.Second)
	c := testutil.ClusterOf(t, first)
	for i := 2; i <= 3; i++ {
		m := testutil.NewMaster(t, testutil.MasterOptions{Name: fmt.Sprintf("m%d", i), Join: first.URL(), Token: first.Token(), Binary: old})
		m.Start()
		c.Masters = append(c.Masters, m)
	}
	allReady := func(what string) {
		t.Helper()
		c.WaitReadyVoters(c.Masters[0], 3, 90*time.Second, what)
	}
	allReady("three ready voters of " + upgradeFrom)

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	clients := map[string]*kubernetes.Clientset{}
	for _, m := range c.Masters {
		clients[m.Name] = clientFor(t, c, m)
	}
	writer := startAckedWriter(ctx, "u", 5*time.Second, func(i int) kubernetes.Interface { return clients[c.Masters[i%3].Name] })

	// Followers first, the leader last (as docs/ha.md says).
	leader := c.Leader(30 * time.Second)
	order := []*testutil.Master{}
	for _, m := range c.Masters {
		if m != leader {
			order = append(order, m)
		}
	}
	order = append(order, leader)
	for i, m := range order {
		if i == 2 {
			// Two new masters and one old: no data key yet.
			st, err := encryptionStatus(c, order[0])
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Keys) != 0 {
				t.Fatalf("a data key exists while %s still runs %s: %+v", leader.Name, upgradeFrom, st.Keys)
			}
		}
		m.Stop()
		m.SetBinary(testutil.Binary(t))
		m.Start()
		m.WaitReady(60 * time.Second)
		allReady(fmt.Sprintf("three ready voters after upgrading %s", m.Name))
		t.Logf("%s upgraded", m.Name)
	}
	// Encryption starts by itself once every master runs the new release.
	testutil.WaitFor(t, 60*time.Second, "the first data key", func() error {
		st, err := encryptionStatus(c, c.Masters[0])
		if err != nil {
			return err
		}
		if len(st.Keys) == 0 {
			return fmt.Errorf("no key yet")
		}
		return nil
	})
	written := writer.Stop()
	if len(written) < 20 {
		t.Fatalf("only %d writes acknowledged during the upgrade", len(written))
	}
	for _, m := range c.Masters {
		list, err := clients[m.Name].CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, cm := range list.Items {
			have[cm.Name] = true
		}
		for _, n := range written {
			if !have[n] {
				t.Fatalf("%s lacks acknowledged write %s (%d acknowledged)", m.Name, n, len(written))
			}
		}
	}
	t.Logf("%d writes acknowledged during the rolling upgrade, all present on every master", len(written))
}

// TestDowngradeRefused (issue 18): a master whose Raft dir a newer data
// format wrote (as a later release records it) refuses to start, saying
// why and what to do, and leaves the dir alone.
func TestDowngradeRefused(t *testing.T) {
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "m1"})
	m.Start()
	m.WaitReady(30 * time.Second)
	m.Stop()
	formatFile := filepath.Join(m.DataDir, "raft", "format")
	if b, err := os.ReadFile(formatFile); err != nil || !strings.Contains(string(b), `"format":2`) {
		t.Fatalf("the master recorded no data format: %q %v", b, err)
	}
	if err := os.WriteFile(formatFile, []byte(`{"format":99}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := m.RunServer(ctx)
	if err == nil || !strings.Contains(out, "written by a newer Skiff release (data format 99") || !strings.Contains(out, "downgrade") {
		t.Fatalf("a master on a newer data format: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(formatFile); string(b) != `{"format":99}` {
		t.Fatalf("the refused dir's format record changed: %q", b)
	}
}
