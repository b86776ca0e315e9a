package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// kubectlVersions are the kubectl builds the scenario runs with.
var kubectlVersions = []string{"1.27", "1.28", "1.29", "1.30", "1.31", "1.32", "1.33"}

const kubectlDir = "/usr/lib/google-cloud-sdk/bin"

// scenarioManifest is a Deployment, a Service and a ConfigMap; {{NS}},
// {{COLOR}} and {{VALUE}} are filled per step.
const scenarioManifest = `apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: {{NS}}
data:
  color: {{COLOR}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {{NS}}
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      securityContext:
        runAsNonRoot: true
        runAsUser: 101
        seccompProfile: {type: RuntimeDefault}
      containers:
      - name: web
        image: nginx:1.25
        securityContext:
          allowPrivilegeEscalation: false
          capabilities: {drop: [ALL]}
        ports:
        - containerPort: 80
          name: http
        env:
        - name: GREETING
          value: "{{VALUE}}"
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: {{NS}}
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: http
`

// kubectlRunner runs one kubectl build against one kubeconfig with its own
// HOME (and so its own discovery and OpenAPI cache).
type kubectlRunner struct {
	t          *testing.T
	bin        string
	kubeconfig string
	home       string
	dir        string
}

func (k *kubectlRunner) cmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, k.bin, append([]string{"--kubeconfig", k.kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+k.home, "KUBECACHEDIR="+filepath.Join(k.home, "cache"))
	cmd.Dir = k.dir
	return cmd
}

// try runs kubectl and returns its combined output and error.
func (k *kubectlRunner) try(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := k.cmd(ctx, args...).CombinedOutput()
	return string(out), err
}

// run runs kubectl and fails the test if it fails.
func (k *kubectlRunner) run(args ...string) string {
	k.t.Helper()
	out, err := k.try(args...)
	if err != nil {
		k.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// fail runs kubectl, expects it to fail and returns its output.
func (k *kubectlRunner) fail(args ...string) string {
	k.t.Helper()
	out, err := k.try(args...)
	if err == nil {
		k.t.Fatalf("kubectl %s succeeded, want an error:\n%s", strings.Join(args, " "), out)
	}
	return out
}

func (k *kubectlRunner) writeFile(name, content string) string {
	k.t.Helper()
	p := filepath.Join(k.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		k.t.Fatal(err)
	}
	return p
}

func mustContain(t *testing.T, what, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Fatalf("%s: output lacks %q:\n%s", what, w, out)
		}
	}
}

func mustNotContain(t *testing.T, what, out string, bad ...string) {
	t.Helper()
	for _, b := range bad {
		if strings.Contains(out, b) {
			t.Fatalf("%s: output has %q:\n%s", what, b, out)
		}
	}
}

// syncBuffer is an output buffer a running command writes to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestKubectlScenario drives one real `skiff server` with every installed
// kubectl from 1.27 to 1.33, each in its own namespace: discovery, apply
// with the default (server-side) validation, re-apply, the output formats,
// label/annotate/patch/scale, selectors, watch, explain, delete and the
// errors for an invalid manifest, an unknown field and a stale update.
func TestKubectlScenario(t *testing.T) {
	var found []string
	for _, v := range kubectlVersions {
		if _, err := os.Stat(filepath.Join(kubectlDir, "kubectl."+v)); err == nil {
			found = append(found, v)
		}
	}
	if len(found) == 0 {
		t.Skipf("no kubectl.1.27 … kubectl.1.33 under %s", kubectlDir)
	}
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "kubectl"})
	m.Start()
	m.WaitReady(30 * time.Second)
	for _, v := range kubectlVersions {
		t.Run("kubectl-"+v, func(t *testing.T) {
			bin := filepath.Join(kubectlDir, "kubectl."+v)
			if _, err := os.Stat(bin); err != nil {
				t.Skipf("kubectl %s is not installed at %s", v, bin)
			}
			t.Parallel()
			k := &kubectlRunner{t: t, bin: bin, kubeconfig: m.Kubeconfig(), home: t.TempDir(), dir: t.TempDir()}
			kubectlScenario(t, k, "kv"+strings.ReplaceAll(v, ".", ""))
		})
	}
}

func kubectlScenario(t *testing.T, k *kubectlRunner, ns string) {
	manifest := func(color, value string) string {
		r := strings.NewReplacer("{{NS}}", ns, "{{COLOR}}", color, "{{VALUE}}", value)
		return r.Replace(scenarioManifest)
	}
	// Discovery.
	out := k.run("api-resources")
	mustContain(t, "api-resources", out, "deployments", "statefulsets", "cronjobs", "poddisruptionbudgets", "endpointslices", "clusterroles")
	mustNotContain(t, "api-resources", out, "error", "couldn't get")

	mustContain(t, "create namespace", k.run("create", "namespace", ns), "namespace/"+ns+" created")

	// Apply with the default validation (server-side: kubectl finds
	// fieldValidation in the OpenAPI documents), then re-apply a change.
	app := k.writeFile("app.yaml", manifest("blue", "hello"))
	out = k.run("apply", "-f", app)
	mustContain(t, "apply", out, "configmap/web-config created", "deployment.apps/web created", "service/web created")
	mustNotContain(t, "apply", out, "Warning", "warning", "error")
	app2 := k.writeFile("app2.yaml", manifest("green", "bonjour"))
	out = k.run("apply", "-f", app2)
	mustContain(t, "re-apply", out, "configmap/web-config configured", "deployment.apps/web configured", "service/web unchanged")
	mustNotContain(t, "re-apply", out, "created", "Warning", "warning", "error")
	out = k.run("get", "deployment", "web", "-n", ns, "-o", "jsonpath={.spec.template.spec.containers[0].env[0].value} {.metadata.generation}")
	if out != "bonjour 2" {
		t.Fatalf("after re-apply: env value and generation %q, want \"bonjour 2\"", out)
	}

	// Output formats.
	out = k.run("get", "deployment", "web", "-n", ns, "-o", "wide")
	mustContain(t, "get -o wide", out, "NAME", "READY", "UP-TO-DATE", "CONTAINERS", "IMAGES", "SELECTOR", "nginx:1.25", "app=web")
	out = k.run("get", "service", "web", "-n", ns)
	mustContain(t, "get service", out, "TYPE", "PORT(S)", "80/TCP")
	out = k.run("get", "configmap", "web-config", "-n", ns, "-o", "yaml")
	mustContain(t, "get -o yaml", out, "kind: ConfigMap", "color: green", "resourceVersion:", "uid:")
	out = k.run("get", "deployment", "web", "-n", ns, "-o", "json")
	var dep struct {
		Kind string `json:"kind"`
		Spec struct {
			Replicas int `json:"replicas"`
		} `json:"spec"`
	}
	if err := json.Unmarshal([]byte(out), &dep); err != nil || dep.Kind != "Deployment" || dep.Spec.Replicas != 2 {
		t.Fatalf("get -o json: %v %+v\n%s", err, dep, out)
	}
	if out := k.run("get", "configmap", "web-config", "-n", ns, "-o", "jsonpath={.data.color}"); out != "green" {
		t.Fatalf("get -o jsonpath: %q", out)
	}

	// Label, annotate and the three patch types.
	mustContain(t, "label", k.run("label", "configmap", "web-config", "-n", ns, "tier=front"), "configmap/web-config labeled")
	// kubectl 1.27 prints "annotate", later ones "annotated".
	mustContain(t, "annotate", k.run("annotate", "configmap", "web-config", "-n", ns, "owner=team-a"), "configmap/web-config annotate")
	mustContain(t, "strategic patch", k.run("patch", "deployment", "web", "-n", ns, "-p",
		`{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.26"}]}}}}`), "deployment.apps/web patched")
	mustContain(t, "merge patch", k.run("patch", "configmap", "web-config", "-n", ns, "--type", "merge", "-p",
		`{"data":{"size":"large"}}`), "configmap/web-config patched")
	mustContain(t, "json patch", k.run("patch", "configmap", "web-config", "-n", ns, "--type", "json", "-p",
		`[{"op":"replace","path":"/data/color","value":"red"}]`), "configmap/web-config patched")
	out = k.run("get", "configmap", "web-config", "-n", ns, "-o",
		"jsonpath={.data.color},{.data.size},{.metadata.labels.tier},{.metadata.annotations.owner}")
	if out != "red,large,front,team-a" {
		t.Fatalf("after label/annotate/patch: %q", out)
	}
	out = k.run("get", "deployment", "web", "-n", ns, "-o", "jsonpath={.spec.template.spec.containers[*].image} {.spec.template.spec.containers[*].ports[0].containerPort}")
	if out != "nginx:1.26 80" {
		t.Fatalf("strategic merge patch kept the container's other fields? %q", out)
	}

	// Scale through the scale subresource.
	mustContain(t, "scale", k.run("scale", "deployment", "web", "-n", ns, "--replicas=4"), "deployment.apps/web scaled")
	if out := k.run("get", "deployment", "web", "-n", ns, "-o", "jsonpath={.spec.replicas}"); out != "4" {
		t.Fatalf("after scale: replicas %q", out)
	}

	// Label and field selectors.
	k.run("create", "configmap", "other", "-n", ns, "--from-literal=a=b")
	out = k.run("get", "configmaps", "-n", ns, "-l", "tier=front", "-o", "name")
	if strings.TrimSpace(out) != "configmap/web-config" {
		t.Fatalf("get -l: %q", out)
	}
	out = k.run("get", "configmaps", "-n", ns, "--field-selector", "metadata.name=other", "-o", "name")
	if strings.TrimSpace(out) != "configmap/other" {
		t.Fatalf("get --field-selector: %q", out)
	}
	out = k.fail("get", "configmaps", "-n", ns, "--field-selector", "data.a=b")
	mustContain(t, "unsupported field selector", out, "field label not supported: data.a")

	// Watch: the initial list, then a change, until --request-timeout.
	kubectlWatch(t, k, ns)

	// Explain from the OpenAPI documents.
	out = k.run("explain", "deployment.spec.replicas")
	mustContain(t, "explain deployment.spec.replicas", out, "replicas", "integer")
	out = k.run("explain", "pod.spec")
	mustContain(t, "explain pod.spec", out, "containers", "Container", "restartPolicy")

	// Errors: an invalid manifest, an unknown field, a stale update.
	bad := strings.Replace(manifest("blue", "x"), "        app: web\n    spec:", "        app: other\n    spec:", 1)
	bad = strings.Replace(bad, "name: web\n  namespace", "name: web-bad\n  namespace", 1)
	out = k.fail("apply", "-f", k.writeFile("invalid.yaml", bad))
	mustContain(t, "invalid manifest", out, `Deployment "web-bad" is invalid`, "spec.template.metadata.labels", "`selector` does not match template `labels`")
	unknown := strings.Replace(manifest("blue", "x"), "  replicas: 2\n", "  replicas: 2\n  replicaz: 3\n", 1)
	out = k.fail("apply", "-f", k.writeFile("unknown.yaml", unknown))
	mustContain(t, "unknown field", out, `unknown field "spec.replicaz"`)
	stale := k.run("get", "configmap", "other", "-n", ns, "-o", "yaml")
	k.run("label", "configmap", "other", "-n", ns, "bump=1")
	out = k.fail("replace", "-f", k.writeFile("stale.yaml", stale))
	mustContain(t, "stale update", out, "Conflict", "the object has been modified")

	// Delete.
	mustContain(t, "delete", k.run("delete", "-f", app2), `configmap "web-config" deleted`, `deployment.apps "web" deleted`, `service "web" deleted`)
	out = k.run("get", "deployments,services,configmaps", "-n", ns, "-o", "name")
	mustNotContain(t, "after delete", out, "deployment.apps/web", "service/web", "configmap/web-config")
	out = k.fail("get", "deployment", "web", "-n", ns)
	mustContain(t, "get after delete", out, "NotFound")
}

// kubectlWatch runs `get -w --request-timeout`, creates a ConfigMap once
// the initial list is out, and checks both reached the watcher.
func kubectlWatch(t *testing.T, k *kubectlRunner, ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var buf syncBuffer
	cmd := k.cmd(ctx, "get", "configmaps", "-n", ns, "-w", "--request-timeout=4s")
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	testutil.WaitFor(t, 20*time.Second, "the watch's initial list", func() error {
		if !strings.Contains(buf.String(), "web-config") {
			return fmt.Errorf("watch output so far: %q", buf.String())
		}
		return nil
	})
	k.run("create", "configmap", "watched", "-n", ns, "--from-literal=x=y")
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatalf("kubectl get -w did not end after --request-timeout:\n%s", buf.String())
	}
	mustContain(t, "get -w", buf.String(), "NAME", "web-config", "watched")
	mustContain(t, "delete watched", k.run("delete", "configmap", "watched", "-n", ns), `configmap "watched" deleted`)
}
