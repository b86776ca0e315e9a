package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/e2e/testutil"
)

const addonManifest = `# dropped in a follower's manifests dir
apiVersion: v1
kind: Namespace
metadata:
  name: addon-demo
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: addon-demo
data:
  level: "%s"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: addon-seed
  namespace: default
  labels:
    addonmanager.kubernetes.io/mode: EnsureExists
data:
  level: "1"
---
apiVersion: v1
kind: Secret
metadata:
  name: token
  namespace: addon-demo
stringData:
  token: %s
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: addon-demo
spec:
  replicas: %d
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox
`

// writeManifest writes a file into a master's manifests dir at once (a
// rename), as an operator's tools do.
func writeManifest(t *testing.T, m *testutil.Master, name, content string) {
	t.Helper()
	dir := filepath.Join(m.DataDir, "manifests")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

// TestAddonManager (issue 18): a manifest dropped in a follower's
// <data-dir>/manifests/ is applied by the leader; a field edited in the API
// is restored (Reconcile) but not in an EnsureExists object; editing the
// file updates the objects; a bad file gives an ApplyManifestFailed event
// and a Failed row in `skiff cluster addons`; killing the leader keeps
// every object in place and the new leader goes on reconciling; removing
// the file deletes its objects but the EnsureExists one.
func TestAddonManager(t *testing.T) {
	c := testutil.StartCluster(t, 3)
	leader := c.Leader(30 * time.Second)
	follower := otherThan(c, leader)
	cs := clientFor(t, c, follower)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// The manifest holds a Secret: its value must reach neither the Raft
	// log nor a snapshot in the clear (only names and checksums of files
	// are published; the Secret object is sealed).
	marker := fmt.Sprintf("skiff-addon-marker-%d", time.Now().UnixNano())
	writeManifest(t, follower, "demo.yaml", fmt.Sprintf(addonManifest, "1", marker, 1))
	testutil.WaitFor(t, 60*time.Second, "the manifest's objects", func() error {
		ns, err := cs.CoreV1().Namespaces().Get(ctx, "addon-demo", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if ns.Labels["skiff.io/addon"] != "demo" {
			return fmt.Errorf("namespace labels %v", ns.Labels)
		}
		if _, err := cs.CoreV1().ConfigMaps("addon-demo").Get(ctx, "settings", metav1.GetOptions{}); err != nil {
			return err
		}
		if _, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "addon-seed", metav1.GetOptions{}); err != nil {
			return err
		}
		_, err = cs.AppsV1().Deployments("addon-demo").Get(ctx, "web", metav1.GetOptions{})
		return err
	})

	sec, err := cs.CoreV1().Secrets("addon-demo").Get(ctx, "token", metav1.GetOptions{})
	if err != nil || string(sec.Data["token"]) != marker {
		t.Fatalf("the manifest's Secret: %v %v", sec, err)
	}
	var raftDirs, logs []string
	for _, m := range c.Masters {
		raftDirs = append(raftDirs, filepath.Join(m.DataDir, "raft"))
		logs = append(logs, m.LogPath())
	}
	if found := filesHolding(t, marker, raftDirs, logs...); len(found) > 0 {
		t.Errorf("the manifest's Secret value is on disk outside the manifests dir: %s", strings.Join(found, ", "))
	}

	// Edits in the API: restored in the Reconcile object, kept in the
	// EnsureExists one.
	setLevel(ctx, t, cs, "addon-demo", "settings", "9")
	setLevel(ctx, t, cs, "default", "addon-seed", "9")
	waitLevel(ctx, t, cs, "addon-demo", "settings", "1", "the edit reverted")
	if got := level(ctx, t, cs, "default", "addon-seed"); got != "9" {
		t.Errorf("EnsureExists object updated by the addon manager: level %q, want 9", got)
	}

	// Editing the file updates the objects.
	writeManifest(t, follower, "demo.yaml", fmt.Sprintf(addonManifest, "2", marker, 2))
	waitLevel(ctx, t, cs, "addon-demo", "settings", "2", "the file's new value")
	testutil.WaitFor(t, 30*time.Second, "2 replicas", func() error {
		d, err := cs.AppsV1().Deployments("addon-demo").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if *d.Spec.Replicas != 2 {
			return fmt.Errorf("replicas %d", *d.Spec.Replicas)
		}
		return nil
	})

	// A bad file: an event and a Failed row.
	writeManifest(t, follower, "broken.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  namespace: default\n")
	testutil.WaitFor(t, 30*time.Second, "an ApplyManifestFailed event", func() error {
		evs, err := cs.CoreV1().Events("kube-system").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Addon,involvedObject.name=broken"})
		if err != nil {
			return err
		}
		for _, ev := range evs.Items {
			if ev.Reason == "ApplyManifestFailed" && strings.Contains(ev.Message, "no metadata.name") {
				return nil
			}
		}
		return fmt.Errorf("events: %+v", evs.Items)
	})
	addonsTable := func(via *testutil.Master) (map[string]string, error) {
		out, err := via.Run(ctx, "cluster", "addons", "--kubeconfig", via.Kubeconfig())
		if err != nil {
			return nil, fmt.Errorf("skiff cluster addons: %v\n%s", err, out)
		}
		rows := map[string]string{}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if !strings.HasPrefix(lines[0], "FILE") || !strings.Contains(lines[0], "LAST APPLIED") {
			return nil, fmt.Errorf("no header:\n%s", out)
		}
		for _, l := range lines[1:] {
			rows[strings.Fields(l)[0]] = l
		}
		return rows, nil
	}
	testutil.WaitFor(t, 30*time.Second, "skiff cluster addons", func() error {
		rows, err := addonsTable(follower)
		if err != nil {
			return err
		}
		if f := strings.Fields(rows["demo.yaml"]); len(f) < 5 || f[1] != follower.Name || f[2] != "Mixed" || f[3] != "5" || f[4] != "Applied" {
			return fmt.Errorf("demo.yaml row %q", rows["demo.yaml"])
		}
		if !strings.Contains(rows["broken.yaml"], "Failed") || !strings.Contains(rows["broken.yaml"], "no metadata.name") {
			return fmt.Errorf("broken.yaml row %q", rows["broken.yaml"])
		}
		return nil
	})

	// The leader dies: every object stays (same UIDs), and the next
	// leader reconciles (an edit is reverted again).
	uids := addonUIDs(ctx, t, cs)
	leader.Kill()
	survivor := otherThan(c, leader)
	cs = clientFor(t, c, survivor)
	newLeader := c.Leader(30 * time.Second)
	testutil.WaitFor(t, 60*time.Second, "the new leader's pass", func() error {
		rows, err := addonsTable(survivor)
		if err != nil {
			return err
		}
		if !strings.Contains(rows["demo.yaml"], "Applied") {
			return fmt.Errorf("leader %s: demo.yaml row %q", newLeader.Name, rows["demo.yaml"])
		}
		return nil
	})
	testutil.WaitFor(t, 30*time.Second, "the addon metrics of the new leader", func() error {
		resp, err := c.Admin.Get(newLeader.URL() + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		for _, want := range []string{`skiff_addon_manifests{status="Applied"} 1`, `skiff_addon_manifests{status="Failed"} 1`} {
			if !strings.Contains(string(b), want) {
				return fmt.Errorf("no %s in /metrics", want)
			}
		}
		return nil
	})
	if after := addonUIDs(ctx, t, cs); fmt.Sprint(after) != fmt.Sprint(uids) {
		t.Errorf("objects changed across the leader change: before %v, after %v", uids, after)
	}
	setLevel(ctx, t, cs, "addon-demo", "settings", "7")
	waitLevel(ctx, t, cs, "addon-demo", "settings", "2", "the edit reverted by the new leader")

	// Removing the file deletes its objects, but the EnsureExists one.
	if err := os.Remove(filepath.Join(follower.DataDir, "manifests", "demo.yaml")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, "the objects deleted", func() error {
		if _, err := cs.AppsV1().Deployments("addon-demo").Get(ctx, "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("deployment: %v", err)
		}
		if _, err := cs.CoreV1().ConfigMaps("addon-demo").Get(ctx, "settings", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("configmap: %v", err)
		}
		ns, err := cs.CoreV1().Namespaces().Get(ctx, "addon-demo", metav1.GetOptions{})
		if err == nil && ns.DeletionTimestamp == nil {
			return fmt.Errorf("namespace not being deleted")
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		return nil
	})
	if got := level(ctx, t, cs, "default", "addon-seed"); got != "9" {
		t.Errorf("EnsureExists object after its file was removed: level %q, want it kept at 9", got)
	}
}

func level(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, name string) string {
	t.Helper()
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("configmap %s/%s: %v", ns, name, err)
	}
	return cm.Data["level"]
}

func setLevel(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, name, v string) {
	t.Helper()
	patch := fmt.Sprintf(`{"data":{"level":%q}}`, v)
	if _, err := cs.CoreV1().ConfigMaps(ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("edit %s/%s: %v", ns, name, err)
	}
}

func waitLevel(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, name, want, what string) {
	t.Helper()
	testutil.WaitFor(t, 40*time.Second, what, func() error {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cm.Data["level"] != want {
			return fmt.Errorf("%s/%s level %q, want %q", ns, name, cm.Data["level"], want)
		}
		return nil
	})
}

// addonUIDs are the UIDs of the demo manifest's objects.
func addonUIDs(ctx context.Context, t *testing.T, cs kubernetes.Interface) []string {
	t.Helper()
	var out []string
	ns, err := cs.CoreV1().Namespaces().Get(ctx, "addon-demo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, string(ns.UID))
	for _, key := range [][2]string{{"addon-demo", "settings"}, {"default", "addon-seed"}} {
		cm, err := cs.CoreV1().ConfigMaps(key[0]).Get(ctx, key[1], metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(cm.UID))
	}
	d, err := cs.AppsV1().Deployments("addon-demo").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return append(out, string(d.UID))
}
