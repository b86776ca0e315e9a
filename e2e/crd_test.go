package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// widgetCRDYAML has a schema with defaults, an enum, a CEL rule, a status
// subresource, printer columns, a short name and the "all" category.
const widgetCRDYAML = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd], categories: [all]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: string, jsonPath: .spec.size}
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - {rule: "self.replicas <= 10", message: "at most 10 replicas"}
            properties:
              size: {type: string, default: small, enum: [small, large]}
              replicas: {type: integer, default: 1}
          status:
            type: object
            properties:
              phase: {type: string}
`

// TestKubectlCustomResources drives CRDs with the stock kubectl on a
// 3-master cluster: the CRD applied through one master is served by the
// others, custom objects are defaulted, pruned and validated, kubectl get
// shows the printer columns, a watch sees a change, and deleting the CRD
// deletes its objects.
func TestKubectlCustomResources(t *testing.T) {
	if _, err := os.Stat("/usr/bin/kubectl"); err != nil {
		t.Skip("kubectl not installed at /usr/bin/kubectl")
	}
	c := testutil.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	m1, m2, m3 := c.Masters[0], c.Masters[1], c.Masters[2]
	run := func(m *testutil.Master, args ...string) string {
		t.Helper()
		out, err := kubectl(ctx, m.Kubeconfig(), args...)
		if err != nil {
			t.Fatalf("kubectl %v via %s: %v\n%s", args, m.Name, err, out)
		}
		return out
	}
	fail := func(m *testutil.Master, want []string, args ...string) {
		t.Helper()
		out, err := kubectl(ctx, m.Kubeconfig(), args...)
		if err == nil {
			t.Fatalf("kubectl %v succeeded:\n%s", args, out)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Fatalf("kubectl %v: output lacks %q:\n%s", args, w, out)
			}
		}
	}

	// A namespace deleted before the CRD exists fills the namespace
	// controller's discovery cache.
	run(m1, "create", "namespace", "warmup")
	run(m1, "delete", "namespace", "warmup", "--timeout=60s")

	// Bad CRDs: 422 naming the field.
	nonStructural := strings.Replace(widgetCRDYAML, "          status:\n            type: object\n", "          status:\n", 1)
	// (A schema all versions share is reported at spec.validation, as
	// kube-apiserver reports it.)
	fail(m1, []string{"is invalid", "openAPIV3Schema.properties[status].type: Required value"},
		"apply", "-f", file("nonstructural.yaml", nonStructural))
	badRule := strings.Replace(widgetCRDYAML, `self.replicas <= 10`, `self.replicas <=`, 1)
	fail(m1, []string{"is invalid", "x-kubernetes-validations[0].rule"}, "apply", "-f", file("badrule.yaml", badRule))

	crd := file("crd.yaml", widgetCRDYAML)
	run(m1, "apply", "-f", crd)
	run(m1, "wait", "--for", "condition=established", "--timeout=30s", "crd/widgets.example.com")
	run(m1, "wait", "--for", "condition=namesaccepted", "--timeout=30s", "crd/widgets.example.com")

	run(m1, "apply", "-f", file("one.yaml", `apiVersion: example.com/v1
kind: Widget
metadata: {name: one, namespace: default}
spec: {size: large, replicas: 3}
`))
	// kubectl's own schema check is off so that the server prunes.
	run(m2, "create", "--validate=false", "-f", file("two.yaml", `apiVersion: example.com/v1
kind: Widget
metadata: {name: two, namespace: default}
spec: {unknown: dropped}
`))
	// kubectl's default validation asks the server to refuse it.
	fail(m1, []string{`unknown field "spec.unknown"`}, "apply", "-f", file("three.yaml", `apiVersion: example.com/v1
kind: Widget
metadata: {name: three, namespace: default}
spec: {unknown: refused}
`))
	if out := run(m3, "get", "widget", "two", "-n", "default", "-o", "jsonpath={.spec.size}/{.spec.replicas}/{.spec.unknown}"); out != "small/1/" {
		t.Fatalf("defaults and pruning: %q", out)
	}

	// The printer columns, by every master, by plural and short name.
	for _, m := range c.Masters {
		out := run(m, "get", "wd", "-n", "default")
		if !strings.Contains(out, "SIZE") || !strings.Contains(out, "REPLICAS") || !regexpLine(out, "one", "large", "3") || !regexpLine(out, "two", "small", "1") {
			t.Fatalf("kubectl get wd via %s:\n%s", m.Name, out)
		}
	}
	if out := run(m2, "get", "all", "-n", "default"); !strings.Contains(out, "widget.example.com/one") {
		t.Fatalf("kubectl get all lacks the widgets:\n%s", out)
	}
	// OpenAPI: kubectl explain reads the CRD's schema.
	if out := run(m3, "explain", "widgets.spec.size"); !strings.Contains(out, "Widget") || !strings.Contains(out, "size") || !strings.Contains(out, "<string>") {
		t.Fatalf("kubectl explain:\n%s", out)
	}

	// Schema violations and the CEL rule: 422 naming the field.
	fail(m1, []string{"spec.size", "Unsupported value"}, "patch", "widget", "one", "-n", "default", "--type=merge", "-p", `{"spec":{"size":"huge"}}`)
	fail(m2, []string{"spec", "at most 10 replicas"}, "patch", "widget", "one", "-n", "default", "--type=merge", "-p", `{"spec":{"replicas":11}}`)

	// A watch through one master sees a change made through another.
	var buf syncBuffer
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	watch := exec.CommandContext(wctx, "/usr/bin/kubectl", "--kubeconfig", m3.Kubeconfig(), "get", "widgets", "-n", "default", "-w",
		"-o", "jsonpath={.metadata.name}={.spec.replicas}{\"\\n\"}")
	watch.Stdout, watch.Stderr = &buf, &buf
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wcancel(); _ = watch.Wait() })
	testutil.WaitFor(t, 30*time.Second, "the watch's initial list", func() error {
		if !strings.Contains(buf.String(), "one=3") {
			return fmt.Errorf("watch output %q", buf.String())
		}
		return nil
	})
	run(m1, "patch", "widget", "one", "-n", "default", "--type=merge", "-p", `{"spec":{"replicas":7}}`)
	testutil.WaitFor(t, 30*time.Second, "the watch to see replicas 7", func() error {
		if !strings.Contains(buf.String(), "one=7") {
			return fmt.Errorf("watch output %q", buf.String())
		}
		return nil
	})

	// Status goes through the status subresource only.
	run(m2, "patch", "widget", "one", "-n", "default", "--subresource=status", "--type=merge", "-p", `{"status":{"phase":"Ready"}}`)
	if out := run(m3, "get", "widget", "one", "-n", "default", "-o", "jsonpath={.status.phase}/{.metadata.generation}"); out != "Ready/2" {
		t.Fatalf("status: %q", out)
	}

	// kubectl apply again: client-side apply's merge patch.
	run(m2, "apply", "-f", file("one.yaml", `apiVersion: example.com/v1
kind: Widget
metadata: {name: one, namespace: default}
spec: {size: large, replicas: 4}
`))
	if out := run(m3, "get", "widget", "one", "-n", "default", "-o", "jsonpath={.spec.replicas}"); out != "4" {
		t.Fatalf("re-apply: replicas %q", out)
	}

	// The garbage collector follows an owner reference to a custom object.
	uid := run(m1, "get", "widget", "two", "-n", "default", "-o", "jsonpath={.metadata.uid}")
	run(m1, "apply", "-f", file("owned.yaml", fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata:
  name: owned
  namespace: default
  ownerReferences: [{apiVersion: example.com/v1, kind: Widget, name: two, uid: %s}]
`, uid)))
	run(m2, "delete", "widget", "two", "-n", "default")
	testutil.WaitFor(t, 90*time.Second, "the garbage collector to delete the widget's ConfigMap", func() error {
		out, err := kubectl(ctx, m3.Kubeconfig(), "get", "configmap", "owned", "-n", "default")
		if err == nil || !strings.Contains(out, "NotFound") {
			return fmt.Errorf("configmap still there: %v %s", err, out)
		}
		return nil
	})

	// Deleting a namespace deletes its custom objects.
	run(m1, "create", "namespace", "crdns")
	run(m1, "apply", "-f", file("inns.yaml", `apiVersion: example.com/v1
kind: Widget
metadata: {name: inns, namespace: crdns}
spec: {size: small}
`))
	run(m2, "delete", "namespace", "crdns", "--timeout=60s")
	if out := run(m3, "get", "widgets", "-A", "-o", "name"); strings.Contains(out, "inns") {
		t.Fatalf("a custom object outlived its namespace:\n%s", out)
	}

	// Deleting the CRD deletes its objects: a new CRD of the same name
	// starts empty.
	run(m2, "delete", "crd", "widgets.example.com", "--timeout=60s")
	// (kubectl's discovery cache may still list the resource: then the
	// list is a 404.)
	if out, err := kubectl(ctx, m3.Kubeconfig(), "get", "widgets", "-n", "default"); err == nil ||
		!strings.Contains(out, "the server doesn't have a resource type") && !strings.Contains(out, "NotFound") {
		t.Fatalf("widgets still served after their CRD was deleted: %v\n%s", err, out)
	}
	run(m1, "apply", "-f", crd)
	run(m1, "wait", "--for", "condition=established", "--timeout=30s", "crd/widgets.example.com")
	if out := run(m1, "get", "widgets", "-A", "-o", "name"); strings.TrimSpace(out) != "" {
		t.Fatalf("objects outlived their CRD:\n%s", out)
	}
}

// regexpLine reports whether a line of out holds every field, in order.
func regexpLine(out string, fields ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= len(fields) && slicesHasPrefix(f, fields) {
			return true
		}
	}
	return false
}

func slicesHasPrefix(f, prefix []string) bool {
	for i, p := range prefix {
		if f[i] != p {
			return false
		}
	}
	return true
}
