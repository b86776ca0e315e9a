package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/e2e/testutil"
	"github.com/skiff-io/skiff/server"
)

// snapshotsOf asks master m for its own snapshot list.
func snapshotsOf(c *testutil.Cluster, m *testutil.Master) ([]server.SnapshotInfo, error) {
	resp, err := c.Admin.Get(m.URL() + "/internal/v1/snapshots?local=1")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, b)
	}
	var out []server.SnapshotInfo
	return out, json.Unmarshal(b, &out)
}

// dumpState lists what a restore must give back: every namespace,
// ConfigMap and Secret with its data.
func dumpState(t *testing.T, cs kubernetes.Interface) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range nss.Items {
		out = append(out, "ns/"+ns.Name)
	}
	cms, err := cs.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cm := range cms.Items {
		b, _ := json.Marshal(cm.Data)
		out = append(out, fmt.Sprintf("cm/%s/%s %s %s", cm.Namespace, cm.Name, cm.UID, b))
	}
	secs, err := cs.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secs.Items {
		b, _ := json.Marshal(s.Data)
		out = append(out, fmt.Sprintf("secret/%s/%s %s %s", s.Namespace, s.Name, s.UID, b))
	}
	sort.Strings(out)
	return out
}

// TestClusterSnapshots (issue 18): scheduled snapshots appear on every
// master and are pruned to the retention; `skiff cluster snapshot save
// FILE` writes an encrypted file with no Secret (or any other value) in
// the clear; restored into a fresh master with the server token it gives
// every object back, under the same CA; a wrong token is refused.
func TestClusterSnapshots(t *testing.T) {
	c := testutil.StartCluster(t, 3, "--snapshot-schedule", "@every 2s", "--snapshot-retention", "2")
	first := c.Masters[0]
	cs := first.Clientset()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	marker := fmt.Sprintf("snapshot-marker-%d", time.Now().UnixNano())
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "snap"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		if _, err := cs.CoreV1().ConfigMaps("snap").Create(ctx, configMap(fmt.Sprintf("cm-%d", i), map[string]string{"v": fmt.Sprintf("%s-cm-%d", marker, i)}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	sec, err := cs.CoreV1().Secrets("snap").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s"},
		StringData: map[string]string{"password": "secret-" + marker}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var written uint64
	fmt.Sscan(sec.ResourceVersion, &written)

	for _, m := range c.Masters {
		testutil.WaitFor(t, 60*time.Second, m.Name+" holds scheduled snapshots after the writes, at most 2", func() error {
			list, err := snapshotsOf(c, m)
			if err != nil {
				return err
			}
			n, recent := 0, false
			for _, s := range list {
				if s.Scheduled {
					n++
					recent = recent || s.Index >= written
				}
			}
			if !recent || n > 2 {
				return fmt.Errorf("%d scheduled snapshots, one after index %d: %v", n, written, recent)
			}
			return nil
		})
	}

	file := filepath.Join(t.TempDir(), "cluster.snap")
	out, err := first.Run(ctx, "cluster", "snapshot", "save", file)
	if err != nil || !strings.Contains(out, "on-demand") {
		t.Fatalf("skiff cluster snapshot save: %v\n%s", err, out)
	}
	if found := filesHolding(t, marker, nil, file); len(found) > 0 {
		t.Fatalf("the snapshot file holds values in the clear: %v", found)
	}
	out, err = first.Run(ctx, "cluster", "snapshot", "list")
	if err != nil || !strings.Contains(out, "on-demand") || !strings.Contains(out, "m1,m2,m3") {
		t.Fatalf("skiff cluster snapshot list: %v\n%s", err, out)
	}
	want := dumpState(t, cs)

	// A wrong token is refused; the right one restores.
	wrong := testutil.NewMaster(t, testutil.MasterOptions{Name: "wrong"})
	if out, err := wrong.RunServer(ctx, "--cluster-reset", "--cluster-reset-restore", file, "--token", "not-the-token"); err == nil || !strings.Contains(out, "does not open") {
		t.Fatalf("restore with a wrong token: %v\n%s", err, out)
	}
	restored := testutil.NewMaster(t, testutil.MasterOptions{Name: "restored"})
	out, err = restored.RunServer(ctx, "--cluster-reset", "--cluster-reset-restore", file, "--token", first.Token())
	if err != nil || !strings.Contains(out, "restored from snapshot") {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	t.Logf("restore said:\n%s", out)
	restored.Start()
	restored.WaitReady(60 * time.Second)
	// The same cluster: the first master's admin credentials work.
	// Everything comes back; the restored master, a first master without
	// an agent-token file, adds an agent token of its own.
	var got []string
	for _, item := range dumpState(t, clientFor(t, c, restored)) {
		if !strings.HasPrefix(item, "secret/kube-system/bootstrap-token-") || slices.Contains(want, item) {
			got = append(got, item)
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("restored state differs:\nwant %d items\n%s\ngot %d items\n%s", len(want), strings.Join(want, "\n"), len(got), strings.Join(got, "\n"))
	}
	if _, err := clientFor(t, c, restored).CoreV1().ConfigMaps("snap").Create(ctx, configMap("after-restore", nil), metav1.CreateOptions{}); err != nil {
		t.Fatalf("write on the restored master: %v", err)
	}
	// The restored master's store holds the Secret sealed.
	if found := filesHolding(t, "secret-"+marker, []string{restored.DataDir}); len(found) > 0 {
		t.Fatalf("the restored master holds the Secret in the clear: %v", found)
	}

	// Delete it everywhere.
	name := ""
	list, _ := snapshotsOf(c, first)
	for _, s := range list {
		if !s.Scheduled {
			name = s.Name
		}
	}
	if out, err := first.Run(ctx, "cluster", "snapshot", "delete", name); err != nil {
		t.Fatalf("skiff cluster snapshot delete %s: %v\n%s", name, err, out)
	}
	for _, m := range c.Masters {
		list, err := snapshotsOf(c, m)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range list {
			if s.Name == name {
				t.Fatalf("%s still has %s", m.Name, name)
			}
		}
	}
	_ = os.Remove(file)
}
