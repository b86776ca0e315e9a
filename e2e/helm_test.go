package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// helmRunner runs one helm binary against a cluster, with its own home.
type helmRunner struct {
	t          *testing.T
	bin        string
	kubeconfig string
	home       string
}

func (h *helmRunner) try(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.bin, append([]string{"--kubeconfig", h.kubeconfig, "--namespace", "default"}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+h.home, "XDG_CACHE_HOME="+filepath.Join(h.home, "cache"),
		"XDG_CONFIG_HOME="+filepath.Join(h.home, "config"), "XDG_DATA_HOME="+filepath.Join(h.home, "data"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (h *helmRunner) run(args ...string) string {
	h.t.Helper()
	out, err := h.try(args...)
	if err != nil {
		h.t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TestHelm drives a real `skiff server` with Helm 4 (built from the Go
// module proxy, or skipped when it cannot be fetched): its default
// install, upgrade and rollback apply server-side a chart with a CRD (in
// crds/), a custom object of it, a ConfigMap and a Deployment; the CRD's
// defaults and validation hold; uninstall removes the release's objects.
func TestHelm(t *testing.T) {
	if _, err := os.Stat("/usr/bin/kubectl"); err != nil {
		t.Skip("kubectl not installed at /usr/bin/kubectl")
	}
	helm := testutil.BuildHelm(t)
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "helm"})
	m.Start()
	m.WaitReady(30 * time.Second)
	h := &helmRunner{t: t, bin: helm, kubeconfig: m.Kubeconfig(), home: t.TempDir()}
	k := &kubectlRunner{t: t, bin: "/usr/bin/kubectl", kubeconfig: m.Kubeconfig(), home: t.TempDir(), dir: t.TempDir()}
	chart, err := filepath.Abs("testdata/helm/widgets")
	if err != nil {
		t.Fatal(err)
	}
	get := func(what, jsonpath string) string {
		t.Helper()
		return k.run("get", what, "-o", "jsonpath="+jsonpath)
	}

	out := h.run("install", "demo", chart)
	mustContain(t, "helm install", out, "STATUS: deployed", "REVISION: 1")
	if got := get("crd/widgets.charts.skiff.io", "{.status.conditions[?(@.type=='Established')].status}"); got != "True" {
		t.Fatalf("the chart's CRD is not established: %q", got)
	}
	if got := get("widget/demo-widget", "{.spec.size}/{.spec.color}"); got != "small/blue" {
		t.Fatalf("the chart's Widget (size/defaulted color): %q", got)
	}
	if got := get("deployment/demo-web", "{.spec.replicas}"); got != "1" {
		t.Fatalf("replicas after install: %q", got)
	}
	// Helm 4 applies server-side: its manager owns the fields it set.
	owners := fieldOwners(t, k.run("get", "deployment", "demo-web", "-o", "json", "--show-managed-fields"), `"f:replicas"`)
	if !owners["helm"] {
		t.Fatalf("spec.replicas owners after helm install: %v", owners)
	}
	mustContain(t, "managed fields", k.run("get", "configmap", "demo-config", "-o", "yaml", "--show-managed-fields"), "manager: helm", "operation: Apply")

	out = h.run("upgrade", "demo", chart, "--set", "replicas=2,size=large")
	mustContain(t, "helm upgrade", out, "STATUS: deployed", "REVISION: 2")
	if got := get("deployment/demo-web", "{.spec.replicas}") + "/" + get("widget/demo-widget", "{.spec.size}") + "/" + get("configmap/demo-config", "{.data.replicas}"); got != "2/large/2" {
		t.Fatalf("after upgrade (replicas/size/configmap): %q", got)
	}

	// A value the CRD's schema refuses: the upgrade fails naming the
	// field, and nothing changes.
	bad, err := h.try("upgrade", "demo", chart, "--set", "size=huge")
	if err == nil {
		t.Fatalf("upgrade with size=huge succeeded:\n%s", bad)
	}
	mustContain(t, "refused upgrade", bad, "spec.size", "Unsupported value")
	if got := get("widget/demo-widget", "{.spec.size}"); got != "large" {
		t.Fatalf("after the refused upgrade: size %q", got)
	}

	out = h.run("rollback", "demo", "2")
	mustContain(t, "helm rollback", out, "Rollback was a success")
	out = h.run("rollback", "demo", "1")
	mustContain(t, "helm rollback", out, "Rollback was a success")
	if got := get("deployment/demo-web", "{.spec.replicas}") + "/" + get("widget/demo-widget", "{.spec.size}") + "/" + get("configmap/demo-config", "{.data.replicas}"); got != "1/small/1" {
		t.Fatalf("after rollback to 1 (replicas/size/configmap): %q", got)
	}
	hist := h.run("history", "demo")
	mustContain(t, "helm history", hist, "Rollback to 1")
	if n := strings.Count(hist, "\n"); n < 6 {
		t.Fatalf("helm history lists %d lines, want a header and 5 revisions:\n%s", n, hist)
	}

	h.run("uninstall", "demo", "--wait")
	for _, what := range []string{"deployment/demo-web", "widget/demo-widget", "configmap/demo-config"} {
		if out, err := k.try("get", what); err == nil || !strings.Contains(out, "NotFound") {
			t.Fatalf("%s after uninstall: %v\n%s", what, err, out)
		}
	}
	// Helm keeps the CRDs it installed from crds/.
	k.run("get", "crd", "widgets.charts.skiff.io")
}
