package e2e

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/e2e/testutil"
)

func kubectl(ctx context.Context, kubeconfig string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "/usr/bin/kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestKubectlConfigMaps drives a 3-master cluster with the stock kubectl:
// create through one master, read through another, delete through the third.
func TestKubectlConfigMaps(t *testing.T) {
	if _, err := os.Stat("/usr/bin/kubectl"); err != nil {
		t.Skip("kubectl not installed at /usr/bin/kubectl")
	}
	c := testutil.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kc := func(m *testutil.Master) string {
		// The admin kubeconfig of each master points at that master.
		return m.Kubeconfig()
	}
	run := func(m *testutil.Master, args ...string) string {
		t.Helper()
		out, err := kubectl(ctx, kc(m), args...)
		if err != nil {
			t.Fatalf("kubectl %v via %s: %v\n%s", args, m.Name, err, out)
		}
		return out
	}
	run(c.Masters[0], "create", "configmap", "web", "--from-literal=color=blue", "-n", "default")
	out := run(c.Masters[1], "get", "configmap", "web", "-n", "default", "-o", "jsonpath={.data.color}")
	if out != "blue" {
		t.Fatalf("get via m2: %q", out)
	}
	out = run(c.Masters[2], "get", "configmaps", "-n", "default")
	if !strings.Contains(out, "web") {
		t.Fatalf("list via m3:\n%s", out)
	}
	out = run(c.Masters[2], "get", "namespaces")
	for _, ns := range []string{"default", "kube-system", "kube-public"} {
		if !strings.Contains(out, ns) {
			t.Fatalf("namespace %s missing:\n%s", ns, out)
		}
	}
	run(c.Masters[2], "delete", "configmap", "web", "-n", "default")
	if out, err := kubectl(ctx, kc(c.Masters[0]), "get", "configmap", "web", "-n", "default"); err == nil || !strings.Contains(out, "NotFound") {
		t.Fatalf("get after delete: %v\n%s", err, out)
	}
}

// kubectlMaster starts one master for a test of the stock kubectl (which
// it skips when /usr/bin/kubectl is missing) and returns it with kc: that
// kubectl with the master's admin kubeconfig, each run bounded to 30 s,
// failing the test on an error.
func kubectlMaster(t *testing.T) (*testutil.Master, func(args ...string) string) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/kubectl"); err != nil {
		t.Skip("kubectl not installed at /usr/bin/kubectl")
	}
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "m1"})
	m.Start()
	m.WaitReady(30 * time.Second)
	return m, func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := kubectl(ctx, m.Kubeconfig(), args...)
		if err != nil {
			t.Fatalf("kubectl %v: %v: %s", args, err, out)
		}
		return out
	}
}
