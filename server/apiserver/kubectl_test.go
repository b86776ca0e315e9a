package apiserver_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

// kubectlBinaries are the kubectl builds tested: the system one plus the
// oldest and newest versioned ones when present.
func kubectlBinaries(t *testing.T) []string {
	var out []string
	for _, p := range []string{"/usr/bin/kubectl", "/usr/lib/google-cloud-sdk/bin/kubectl.1.33", "/usr/lib/google-cloud-sdk/bin/kubectl.1.27"} {
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	if len(out) == 0 || out[0] != "/usr/bin/kubectl" {
		t.Skip("/usr/bin/kubectl is not installed; skipping the kubectl compatibility test")
	}
	return out
}

// writeKubeconfig writes a kubeconfig for the test server with its CA and
// the bearer token the fake authenticator accepts.
func writeKubeconfig(t *testing.T, srv *apiservertest.Server) string {
	t.Helper()
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, srv.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: skiff
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: skiff
  context:
    cluster: skiff
    user: admin
    namespace: default
current-context: skiff
`, srv.HTTP.URL, caFile, apiservertest.Token)
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestKubectl(t *testing.T) {
	for _, bin := range kubectlBinaries(t) {
		t.Run(filepath.Base(bin), func(t *testing.T) {
			e := newEnv(t, apiservertest.Options{})
			kubeconfig := writeKubeconfig(t, e.srv)
			home := t.TempDir() // fresh discovery cache per binary
			run := func(args ...string) string {
				t.Helper()
				ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", kubeconfig, "--request-timeout=20s"}, args...)...)
				cmd.Env = append(os.Environ(), "HOME="+home, "KUBECACHEDIR="+filepath.Join(home, "cache"))
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
				}
				return string(out)
			}
			if out := run("create", "configmap", "demo", "--from-literal=greeting=hello"); !strings.Contains(out, "configmap/demo created") {
				t.Fatalf("create: %s", out)
			}
			out := run("get", "configmap", "demo")
			if !strings.Contains(out, "NAME") || !strings.Contains(out, "DATA") || !strings.Contains(out, "demo") {
				t.Fatalf("get: %s", out)
			}
			out = run("get", "configmap", "demo", "-o", "yaml")
			for _, want := range []string{"greeting: hello", "kind: ConfigMap", "resourceVersion:", "uid:"} {
				if !strings.Contains(out, want) {
					t.Fatalf("get -o yaml lacks %q:\n%s", want, out)
				}
			}
			out = run("get", "cm")
			if !strings.Contains(out, "demo") {
				t.Fatalf("get cm (short name): %s", out)
			}
			if out := run("delete", "configmap", "demo"); !strings.Contains(out, `configmap "demo" deleted`) {
				t.Fatalf("delete: %s", out)
			}
			out = run("get", "ns")
			if !strings.Contains(out, "STATUS") || !strings.Contains(out, "default") || !strings.Contains(out, "Active") {
				t.Fatalf("get ns: %s", out)
			}
			if out := run("get", "configmaps", "-A"); !strings.Contains(out, "No resources found") {
				t.Fatalf("get -A after delete: %s", out)
			}
			run("api-resources")
			run("version")
		})
	}
}
