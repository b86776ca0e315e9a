package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// raftDB is a master's Raft log file.
func raftDB(m *testutil.Master) string { return filepath.Join(m.DataDir, "raft", "raft.db") }

// corruptLogEntry changes one byte inside the stored Raft log entry that
// holds marker (the master must be stopped): the entry stays well formed
// for bbolt and msgpack, only its payload differs.
func corruptLogEntry(t *testing.T, path, marker string) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer db.Close()
	found := 0
	err = db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("logs"))
		if b == nil {
			return errors.New("no logs bucket")
		}
		type kv struct{ k, v []byte }
		var hits []kv
		if err := b.ForEach(func(k, v []byte) error {
			if i := bytes.Index(v, []byte(marker)); i >= 0 {
				nv := bytes.Clone(v)
				nv[i] ^= 0x20 // one letter changes case: valid JSON, wrong value
				hits = append(hits, kv{bytes.Clone(k), nv})
			}
			return nil
		}); err != nil {
			return err
		}
		for _, h := range hits {
			if err := b.Put(h.k, h.v); err != nil {
				return err
			}
		}
		found = len(hits)
		return nil
	})
	if err != nil || found == 0 {
		t.Fatalf("corrupt %q in %s: %v (%d entries)", marker, path, err, found)
	}
}

// TestFollowerLogCorruptionRepaired: one byte changed inside a follower's
// stored log entry. Restarted, the follower never serves the changed value
// (linearizable or resourceVersion=0): it finds the entry's checksum wrong,
// answers 503 and fails /readyz, says so (log, Event), installs the
// leader's state and then serves the right value.
func TestFollowerLogCorruptionRepaired(t *testing.T) {
	c := testutil.StartCluster(t, 3)
	ctx := context.Background()
	leader := c.Leader(30 * time.Second)
	f := otherThan(c, leader)
	const value = "original-value-of-the-victim"
	if _, err := clientFor(t, c, leader).CoreV1().ConfigMaps("default").Create(ctx, configMap("victim", map[string]string{"v": value}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	fc := clientFor(t, c, f)
	testutil.WaitFor(t, 30*time.Second, "the follower has the value", func() error {
		cm, err := fc.CoreV1().ConfigMaps("default").Get(ctx, "victim", metav1.GetOptions{ResourceVersion: "0"})
		if err != nil {
			return err
		}
		if cm.Data["v"] != value {
			return fmt.Errorf("value %q", cm.Data["v"])
		}
		return nil
	})
	f.Stop()
	corruptLogEntry(t, raftDB(f), value)
	f.Start()

	served := 0
	testutil.WaitFor(t, 90*time.Second, "the repaired follower serves the value", func() error {
		for _, rv := range []string{"", "0"} {
			cm, err := fc.CoreV1().ConfigMaps("default").Get(ctx, "victim", metav1.GetOptions{ResourceVersion: rv})
			if err != nil {
				if !apierrors.IsServiceUnavailable(err) && !apierrors.IsTimeout(err) && !isConnErr(err) {
					t.Fatalf("read (rv=%q) from the follower: %v", rv, err)
				}
				return err
			}
			if cm.Data["v"] != value {
				t.Fatalf("the follower served %q (rv=%q), the cluster holds %q\n%s", cm.Data["v"], rv, value, f.LogTail(30))
			}
		}
		served++
		return nil
	})
	f.WaitReady(30 * time.Second)
	if log, _ := os.ReadFile(f.LogPath()); !bytes.Contains(log, []byte("STATE CORRUPT")) {
		t.Fatalf("the follower did not report the corruption:\n%s", f.LogTail(40))
	}
	testutil.WaitFor(t, 30*time.Second, "a StateCorrupt Event", func() error {
		evs, err := clientFor(t, c, leader).CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Reason == "StateCorrupt" && e.InvolvedObject.Name == f.Name {
				return nil
			}
		}
		return fmt.Errorf("no StateCorrupt Event among %d", len(evs.Items))
	})
	// Writes after the repair reach it.
	if _, err := clientFor(t, c, leader).CoreV1().ConfigMaps("default").Create(ctx, configMap("after", map[string]string{"v": "1"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := fc.CoreV1().ConfigMaps("default").Get(ctx, "after", metav1.GetOptions{}); err != nil {
		t.Fatalf("write after the repair, read from the follower: %v", err)
	}
}

// rewriteLogEntry changes one byte inside the stored Raft log entry that
// holds marker and seals the entry's checksum again, as a bug or a memory
// error before the checksum was computed would: only the state digest
// comparison can find the divergence.
func rewriteLogEntry(t *testing.T, path, marker string) {
	t.Helper()
	st, err := raftboltdb.New(raftboltdb.Options{Path: path})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer st.Close()
	first, _ := st.FirstIndex()
	last, _ := st.LastIndex()
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := st.GetLog(i, &l); err != nil {
			t.Fatal(err)
		}
		j := bytes.Index(l.Data, []byte(marker))
		if j < 0 {
			continue
		}
		l.Data[j] ^= 0x20
		if l.Data[0] == 0x80 { // the checksummed format (an older one has none)
			n := len(l.Data) - 4
			binary.BigEndian.PutUint32(l.Data[n:], crc32.Checksum(l.Data[:n], crc32.MakeTable(crc32.Castagnoli)))
		}
		if err := st.StoreLog(&l); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("no entry holds %q", marker)
}

// TestDivergentFollowerFoundByDigest: a follower whose state differs from
// the leader's without a damaged checksum is found by the state digest
// comparison at the same index, stops serving, reports it and installs
// the leader's state.
func TestDivergentFollowerFoundByDigest(t *testing.T) {
	c := testutil.StartCluster(t, 3)
	ctx := context.Background()
	leader := c.Leader(30 * time.Second)
	f := otherThan(c, leader)
	const value = "original-value-of-the-victim"
	lc := clientFor(t, c, leader)
	if _, err := lc.CoreV1().ConfigMaps("default").Create(ctx, configMap("victim", map[string]string{"v": value}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	fc := clientFor(t, c, f)
	testutil.WaitFor(t, 30*time.Second, "the follower has the value", func() error {
		_, err := fc.CoreV1().ConfigMaps("default").Get(ctx, "victim", metav1.GetOptions{ResourceVersion: "0"})
		return err
	})
	f.Stop()
	rewriteLogEntry(t, raftDB(f), value)
	f.Start()
	// A write, so that the leader asks for a digest.
	if _, err := lc.CoreV1().ConfigMaps("default").Create(ctx, configMap("after", map[string]string{"v": "1"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, "the digest mismatch found", func() error {
		log, _ := os.ReadFile(f.LogPath())
		if !bytes.Contains(log, []byte("STATE CORRUPT")) || !bytes.Contains(log, []byte("the leader's is")) {
			return errors.New("not yet")
		}
		return nil
	})
	testutil.WaitFor(t, 60*time.Second, "the repaired follower serves the value", func() error {
		cm, err := fc.CoreV1().ConfigMaps("default").Get(ctx, "victim", metav1.GetOptions{ResourceVersion: "0"})
		if err != nil {
			return err
		}
		if cm.Data["v"] != value {
			return fmt.Errorf("value %q", cm.Data["v"])
		}
		return nil
	})
	f.WaitReady(30 * time.Second)
}

func isConnErr(err error) bool {
	s := err.Error()
	return strings.Contains(s, "connection refused") || strings.Contains(s, "EOF") || strings.Contains(s, "connection reset")
}

// TestRestartWithoutQuorumServesNoOlderState: all masters die; one comes
// back alone. With no leader to learn the commit index from, it must not
// answer resourceVersion=0 reads with a state older than it served: it
// applies its local log up to the index it had applied before answering.
func TestRestartWithoutQuorumServesNoOlderState(t *testing.T) {
	c := testutil.StartCluster(t, 3)
	ctx := context.Background()
	leader := c.Leader(30 * time.Second)
	const n = 20
	lc := clientFor(t, c, leader)
	for i := range n {
		if _, err := lc.CoreV1().ConfigMaps("default").Create(ctx, configMap(fmt.Sprintf("cm-%d", i), map[string]string{"i": fmt.Sprint(i)}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	f := otherThan(c, leader)
	fc := clientFor(t, c, f)
	testutil.WaitFor(t, 30*time.Second, "the follower serves every write", func() error {
		l, err := fc.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		if err != nil {
			return err
		}
		if len(l.Items) < n {
			return fmt.Errorf("%d of %d", len(l.Items), n)
		}
		return nil
	})
	// kill -9 right after the follower served them: nothing gets time to
	// be saved at shutdown.
	for _, m := range c.Masters {
		m.Kill()
	}
	f.Start()
	testutil.WaitFor(t, 60*time.Second, "the lone master answers a resourceVersion=0 list", func() error {
		l, err := fc.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		if err != nil {
			return err
		}
		if len(l.Items) < n {
			t.Fatalf("the lone master served %d configmaps at resourceVersion %s; it had served %d", len(l.Items), l.ResourceVersion, n)
		}
		return nil
	})
}

// TestCorruptRaftDBRefused: a truncated or scrambled raft.db makes the
// master exit non-zero with one line naming the file and the recovery,
// not a panic or a fault in bbolt.
func TestCorruptRaftDBRefused(t *testing.T) {
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "m1"})
	m.Start()
	m.WaitReady(30 * time.Second)
	cs := m.Clientset()
	big := strings.Repeat("x", 64<<10)
	for i := range 40 {
		if _, err := cs.CoreV1().ConfigMaps("default").Create(context.Background(), configMap(fmt.Sprintf("cm-%d", i), map[string]string{"v": big}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	m.Stop()
	good, err := os.ReadFile(raftDB(m))
	if err != nil {
		t.Fatal(err)
	}
	for name, damage := range map[string]func([]byte) []byte{
		"truncated": func(b []byte) []byte { return b[:len(b)/2] },
		"scrambled": func(b []byte) []byte {
			b = bytes.Clone(b)
			for i := 3 * 4096; i < len(b); i += 4096 { // every page header after the meta and freelist pages
				copy(b[i:], "\xde\xad\xbe\xef\xde\xad\xbe\xef\xde\xad\xbe\xef\xde\xad\xbe\xef")
			}
			return b
		},
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(raftDB(m), damage(good), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, testutil.Binary(t), "server", "--data-dir", m.DataDir, "--node-name", m.Name,
				"--bind-address", m.IP, "--advertise-address", m.IP, "--disable-agent").CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("exit %v, want status 1; output:\n%s", err, out)
			}
			s := string(out)
			if strings.Contains(s, "panic") || strings.Contains(s, "goroutine ") || strings.Contains(s, "fault") {
				t.Fatalf("crashed instead of refusing:\n%s", s)
			}
			var errLines []string
			for _, l := range strings.Split(s, "\n") {
				if strings.HasPrefix(l, "Error:") {
					errLines = append(errLines, l)
				}
			}
			if len(errLines) != 1 || !strings.Contains(errLines[0], raftDB(m)) || !strings.Contains(errLines[0], "--join") {
				t.Fatalf("want one Error line naming %s and the recovery; output:\n%s", raftDB(m), s)
			}
		})
	}
}

// TestCorruptMasterAloneRefusesToServe: a master whose log holds a
// damaged entry, restarted while its peers are down, finds it while
// applying its log at start and cannot repair without a leader: it answers
// 503 (with a retry delay) instead of any state, `skiff cluster members`
// shows it corrupt, and once its peers are back it repairs and serves.
func TestCorruptMasterAloneRefusesToServe(t *testing.T) {
	c := testutil.StartCluster(t, 3)
	ctx := context.Background()
	leader := c.Leader(30 * time.Second)
	f := otherThan(c, leader)
	const value = "original-value-of-the-victim"
	if _, err := clientFor(t, c, leader).CoreV1().ConfigMaps("default").Create(ctx, configMap("victim", map[string]string{"v": value}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	fc := clientFor(t, c, f)
	testutil.WaitFor(t, 30*time.Second, "the follower has the value", func() error {
		_, err := fc.CoreV1().ConfigMaps("default").Get(ctx, "victim", metav1.GetOptions{ResourceVersion: "0"})
		return err
	})
	for _, m := range c.Masters {
		m.Kill()
	}
	corruptLogEntry(t, raftDB(f), value)
	f.Start()
	testutil.WaitFor(t, 30*time.Second, "members shows the lone master corrupt", func() error {
		rows, err := c.Members(f)
		if err != nil {
			return err
		}
		for _, r := range rows {
			if r.Name == f.Name && r.State == "corrupt" {
				return nil
			}
		}
		return fmt.Errorf("members: %+v", rows)
	})
	for _, rv := range []string{"", "0"} {
		_, err := fc.CoreV1().ConfigMaps("default").Get(ctx, "victim", metav1.GetOptions{ResourceVersion: rv})
		if !apierrors.IsServiceUnavailable(err) {
			t.Fatalf("read (rv=%q) from the corrupt master: %v, want 503", rv, err)
		}
		if d, ok := apierrors.SuggestsClientDelay(err); !ok || d <= 0 {
			t.Fatalf("the 503 suggests no retry delay: %v", err)
		}
	}
	// The header too, for clients that read only it.
	resp, err := c.Admin.Get(f.URL() + "/api/v1/namespaces/default/configmaps/victim")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("raw read from the corrupt master: %s, Retry-After %q", resp.Status, resp.Header.Get("Retry-After"))
	}
	// And the metric (which anonymous users may not read).
	if v := masterMetric(t, c.Admin, f, "skiff_state_corrupt"); v != "1" {
		t.Fatalf("skiff_state_corrupt of the corrupt master = %q, want 1", v)
	}
	if resp, err := caClient(t, f, nil).Get(f.URL() + "/metrics"); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("anonymous GET /metrics: %v %v, want 403", resp, err)
	}
	for _, m := range c.Masters {
		if m != f {
			m.Start()
		}
	}
	f.WaitReady(60 * time.Second)
	cm, err := fc.CoreV1().ConfigMaps("default").Get(ctx, "victim", metav1.GetOptions{ResourceVersion: "0"})
	if err != nil || cm.Data["v"] != value {
		t.Fatalf("after the repair: %v %v", cm, err)
	}
	if v := masterMetric(t, c.Admin, f, "skiff_state_corrupt"); v != "0" {
		t.Fatalf("skiff_state_corrupt after the repair = %q, want 0", v)
	}
}

// masterMetric reads one unlabelled sample of master m's /metrics.
func masterMetric(t *testing.T, hc *http.Client, m *testutil.Master, name string) string {
	t.Helper()
	resp, err := hc.Get(m.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s %s", resp.Status, b)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	t.Fatalf("/metrics has no %s:\n%s", name, b)
	return ""
}
