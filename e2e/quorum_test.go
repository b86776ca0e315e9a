package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// TestQuorumLossAndClusterReset (issue 18): two of three masters are lost
// for good under writes. The survivor serves resourceVersion=0 reads with
// a Warning that the cluster has no quorum, answers writes 503 at once
// (naming the recovery, not after the 30 s request timeout), and `skiff
// cluster members` says what to do. `skiff server --cluster-reset` makes it
// the only master: it serves writes, every write acknowledged before the
// loss is there, and two fresh masters join it.
func TestQuorumLossAndClusterReset(t *testing.T) {
	c := testutil.StartCluster(t, 3)
	// The leader survives: its log holds every acknowledged write (a
	// follower's may lack the last ones, which the reset would then lose,
	// as docs/ha.md says).
	survivor := c.Leader(30 * time.Second)
	var lost []*testutil.Master
	for _, m := range c.Masters {
		if m != survivor {
			lost = append(lost, m)
		}
	}
	cs := clientFor(t, c, survivor)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// Writes through the survivor, acknowledged ones recorded.
	writer := startAckedWriter(ctx, "w", 3*time.Second, func(int) kubernetes.Interface { return cs })
	testutil.WaitFor(t, 30*time.Second, "some acknowledged writes", func() error {
		if n := writer.Count(); n < 20 {
			return fmt.Errorf("%d acknowledged", n)
		}
		return nil
	})
	for _, m := range lost {
		m.Kill()
	}

	// Degraded mode: a write is refused at once, naming the recovery.
	testutil.WaitFor(t, 60*time.Second, "a write refused for lack of quorum", func() error {
		wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
		defer wcancel()
		_, err := cs.CoreV1().ConfigMaps("default").Create(wctx, configMap("during-loss", nil), metav1.CreateOptions{})
		if !apierrors.IsServiceUnavailable(err) || !strings.Contains(err.Error(), "--cluster-reset") {
			return fmt.Errorf("write: %v", err)
		}
		return nil
	})
	written := writer.Stop()
	// Stale reads are served, with the warning.
	resp, err := c.Admin.Get(survivor.URL() + "/api/v1/namespaces/default/configmaps/" + written[0] + "?resourceVersion=0")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Warning"), "no quorum") {
		t.Fatalf("resourceVersion=0 read without quorum: %s, Warning %q", resp.Status, resp.Header.Get("Warning"))
	}
	out, err := survivor.Run(ctx, "cluster", "members")
	if err != nil || !strings.Contains(out, "NO QUORUM") || !strings.Contains(out, "--cluster-reset") {
		t.Fatalf("skiff cluster members without quorum: %v\n%s", err, out)
	}

	// Reset the survivor.
	survivor.Stop()
	out, err = survivor.RunServer(ctx, "--cluster-reset")
	if err != nil || !strings.Contains(out, "only master") {
		t.Fatalf("skiff server --cluster-reset: %v\n%s", err, out)
	}
	t.Logf("--cluster-reset said:\n%s", out)
	survivor.Start()
	survivor.WaitReady(60 * time.Second)
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, configMap("after-reset", nil), metav1.CreateOptions{}); err != nil {
		t.Fatalf("write after the reset: %v", err)
	}
	list, err := cs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, cm := range list.Items {
		have[cm.Name] = true
	}
	for _, name := range written {
		if !have[name] {
			t.Fatalf("acknowledged write %s is gone after the reset (%d acknowledged)", name, len(written))
		}
	}

	// Fresh masters join (the lost ones, rebuilt with empty data dirs).
	for _, old := range lost {
		m := testutil.NewMaster(t, testutil.MasterOptions{Name: old.Name, Join: survivor.URL(), Token: survivor.Token()})
		m.Start()
		m.WaitReady(60 * time.Second)
		if _, err := m.Clientset().CoreV1().ConfigMaps("default").Get(ctx, written[len(written)-1], metav1.GetOptions{}); err != nil {
			t.Fatalf("%s after joining: %v", old.Name, err)
		}
	}
	c.WaitReadyVoters(survivor, 3, 60*time.Second, "three ready voters")
}
