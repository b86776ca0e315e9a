package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// statusKiB reads a "Field:   N kB" line of a /proc file.
func statusKiB(path, field string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			return strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
		}
	}
	return 0, fmt.Errorf("no %s in %s", field, path)
}

// TestWitness (issue 18): two masters and a witness. The witness is a
// ready voter shown as such, serves no Kubernetes API (503), and holds
// little memory of its own;
// either master killed, the other keeps taking writes, with the witness
// for its quorum; an election the witness wins is handed to the master.
func TestWitness(t *testing.T) {
	m1 := testutil.NewMaster(t, testutil.MasterOptions{Name: "m1"})
	m1.Start()
	m1.WaitReady(30 * time.Second)
	m2 := testutil.NewMaster(t, testutil.MasterOptions{Name: "m2", Join: m1.URL(), Token: m1.Token()})
	m2.Start()
	// The witness runs from its own copy of the binary, as on its own
	// box: pages of one file mapped by the masters too would count in its
	// RSS and could not be released.
	w := testutil.NewMaster(t, testutil.MasterOptions{Name: "w", Join: m1.URL(), Token: m1.Token(), Witness: true,
		Binary: copyBinary(t), Args: []string{"--supervise=false"}})
	w.Start()
	c := testutil.ClusterOf(t, m1, m2, w)
	testutil.WaitFor(t, 60*time.Second, "two masters and a witness, ready voters", func() error {
		rows, err := c.Members(m1)
		if err != nil {
			return err
		}
		ready, witness := 0, false
		for _, r := range rows {
			if r.Suffrage == "voter" && r.State == "ready" {
				ready++
			}
			witness = witness || (r.Name == "w" && r.Role == "witness")
		}
		if ready != 3 || !witness {
			return fmt.Errorf("members: %+v", rows)
		}
		return nil
	})
	out, err := m1.Run(context.Background(), "cluster", "members")
	if err != nil || !strings.Contains(out, "witness") {
		t.Fatalf("skiff cluster members: %v\n%s", err, out)
	}
	resp, err := c.Admin.Get(w.URL() + "/api/v1/namespaces")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("the witness's Kubernetes API: %s, want 503", resp.Status)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Kill the leader, bring it back, then kill the other master: the
	// cluster survives the loss of either.
	victim := c.Leader(30 * time.Second)
	if victim == w {
		t.Fatalf("the witness leads")
	}
	for round := 0; round < 2; round++ {
		survivor := m1
		if victim == m1 {
			survivor = m2
		}
		cs := clientFor(t, c, survivor)
		victim.Kill()
		killed := time.Now()
		testutil.WaitFor(t, 30*time.Second, fmt.Sprintf("a write through %s after %s was killed", survivor.Name, victim.Name), func() error {
			wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
			defer wcancel()
			_, err := cs.CoreV1().ConfigMaps("default").Create(wctx, configMap(fmt.Sprintf("after-kill-%d-%d", round, time.Now().UnixNano()), nil), metav1.CreateOptions{})
			return err
		})
		t.Logf("%s killed: writes through %s again after %s", victim.Name, survivor.Name, time.Since(killed).Round(time.Millisecond))
		testutil.WaitFor(t, 30*time.Second, "the surviving master leads (a witness hands leadership over)", func() error {
			if l := c.Leader(10 * time.Second); l != survivor {
				return fmt.Errorf("leader %s", l.Name)
			}
			return nil
		})
		victim.Start()
		victim.WaitReady(60 * time.Second)
		victim = survivor
	}
	// RSS counts the binary's pages the witness has mapped as well as its
	// own (anonymous) memory; the witness pages out the start-up code it
	// no longer runs, a few seconds after it became a voter and every 30 s.
	var rss, anon int
	testutil.WaitFor(t, 75*time.Second, "the witness's RSS under 40 MB", func() error {
		var err error
		if rss, err = statusKiB(fmt.Sprintf("/proc/%d/status", w.Pid()), "VmRSS:"); err != nil {
			return err
		}
		if anon, err = statusKiB(fmt.Sprintf("/proc/%d/smaps_rollup", w.Pid()), "Anonymous:"); err != nil {
			return err
		}
		if rss*1024 >= 40_000_000 {
			return fmt.Errorf("RSS %d KiB (anonymous %d KiB)", rss, anon)
		}
		return nil
	})
	t.Logf("witness: RSS %d MiB, anonymous %d MiB", rss/1024, anon/1024)
}

// copyBinary copies the skiff binary under test into the test's temp dir.
func copyBinary(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile(testutil.Binary(t))
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "skiff")
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	// Synced, so its pages in the page cache are clean (dirty ones could
	// not be paged out).
	if _, err := f.Write(src); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}
