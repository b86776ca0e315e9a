package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// applyManifest is a Deployment and a ConfigMap; {{REPLICAS}} and
// {{COLOR}} are filled per step.
const applyManifest = `apiVersion: v1
kind: ConfigMap
metadata:
  name: ssa-config
  namespace: default
data:
  color: {{COLOR}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ssa-web
  namespace: default
spec:
  replicas: {{REPLICAS}}
  selector:
    matchLabels: {app: ssa-web}
  template:
    metadata:
      labels: {app: ssa-web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - {containerPort: 53, protocol: TCP}
        - {containerPort: 53, protocol: UDP}
`

func applyDoc(replicas, color string) string {
	return strings.NewReplacer("{{REPLICAS}}", replicas, "{{COLOR}}", color).Replace(applyManifest)
}

// fieldOwners returns, for each manager of the object kubectl printed as
// JSON, whether its managedFields entry holds field.
func fieldOwners(t *testing.T, out, field string) map[string]bool {
	t.Helper()
	var obj struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	if err := json.Unmarshal([]byte(out), &obj); err != nil {
		t.Fatalf("decode: %v\n%s", err, out)
	}
	owners := map[string]bool{}
	for _, e := range obj.Metadata.ManagedFields {
		owners[e.Manager] = owners[e.Manager] || (e.FieldsV1 != nil && strings.Contains(string(e.FieldsV1.Raw), field))
	}
	return owners
}

// TestKubectlServerSideApply drives one real `skiff server` with the stock
// kubectl: `apply --server-side` of a Deployment and a ConfigMap by two
// field managers conflicts (409 naming the other manager and the fields),
// --force-conflicts moves the fields (shown by --show-managed-fields), a
// client-side-applied object is re-applied server-side without conflicts,
// and every installed kubectl 1.27–1.33 applies server-side.
func TestKubectlServerSideApply(t *testing.T) {
	if _, err := os.Stat("/usr/bin/kubectl"); err != nil {
		t.Skip("kubectl not installed at /usr/bin/kubectl")
	}
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "ssa"})
	m.Start()
	m.WaitReady(30 * time.Second)
	k := &kubectlRunner{t: t, bin: "/usr/bin/kubectl", kubeconfig: m.Kubeconfig(), home: t.TempDir(), dir: t.TempDir()}

	alice := k.writeFile("alice.yaml", applyDoc("2", "blue"))
	out := k.run("apply", "--server-side", "--field-manager=alice", "-f", alice)
	mustContain(t, "apply as alice", out, "configmap/ssa-config serverside-applied", "deployment.apps/ssa-web serverside-applied")
	// Re-applied unchanged: no conflict with itself.
	k.run("apply", "--server-side", "--field-manager=alice", "-f", alice)

	bob := k.writeFile("bob.yaml", applyDoc("3", "red"))
	out = k.fail("apply", "--server-side", "--field-manager=bob", "-f", bob)
	mustContain(t, "conflicting apply as bob", out, `conflict with "alice"`, ".spec.replicas", ".data.color")
	if got := k.run("get", "configmap", "ssa-config", "-o", "jsonpath={.data.color}"); got != "blue" {
		t.Fatalf("after a conflict: color %q", got)
	}

	out = k.run("apply", "--server-side", "--field-manager=bob", "--force-conflicts", "-f", bob)
	mustContain(t, "forced apply as bob", out, "serverside-applied")
	if got := k.run("get", "deployment", "ssa-web", "-o", "jsonpath={.spec.replicas}"); got != "3" {
		t.Fatalf("after force: replicas %q", got)
	}
	yamlOut := k.run("get", "deployment", "ssa-web", "-o", "yaml", "--show-managed-fields")
	mustContain(t, "managed fields", yamlOut, "manager: alice", "manager: bob", "operation: Apply")
	owners := fieldOwners(t, k.run("get", "deployment", "ssa-web", "-o", "json", "--show-managed-fields"), `"f:replicas"`)
	if !owners["bob"] || owners["alice"] {
		t.Fatalf("spec.replicas owners after force: %v", owners)
	}
	owners = fieldOwners(t, k.run("get", "configmap", "ssa-config", "-o", "json", "--show-managed-fields"), `"f:color"`)
	if !owners["bob"] || owners["alice"] {
		t.Fatalf("data.color owners after force: %v", owners)
	}

	// Client-side apply, then server-side apply of a change: the field
	// manager upgrades the last-applied fields to the applier, so no
	// conflict with kubectl-client-side-apply.
	csa := `apiVersion: v1
kind: ConfigMap
metadata:
  name: ssa-csa
  namespace: default
data:
  color: COLOR
`
	k.run("apply", "-f", k.writeFile("csa.yaml", strings.Replace(csa, "COLOR", "blue", 1)))
	out = k.run("apply", "--server-side", "-f", k.writeFile("csa2.yaml", strings.Replace(csa, "COLOR", "green", 1)))
	mustContain(t, "server-side re-apply of a client-side-applied object", out, "configmap/ssa-csa serverside-applied")
	if got := k.run("get", "configmap", "ssa-csa", "-o", "jsonpath={.data.color}"); got != "green" {
		t.Fatalf("after the server-side re-apply: color %q", got)
	}
	owners = fieldOwners(t, k.run("get", "configmap", "ssa-csa", "-o", "json", "--show-managed-fields"), `"f:color"`)
	if !owners["kubectl"] || owners["kubectl-client-side-apply"] {
		t.Fatalf("data.color owners after the upgrade: %v", owners)
	}

	// Every installed older kubectl applies server-side, twice.
	for _, v := range kubectlVersions {
		bin := filepath.Join(kubectlDir, "kubectl."+v)
		if _, err := os.Stat(bin); err != nil {
			continue
		}
		kv := &kubectlRunner{t: t, bin: bin, kubeconfig: m.Kubeconfig(), home: t.TempDir(), dir: t.TempDir()}
		name := "ssa-" + strings.ReplaceAll(v, ".", "")
		doc := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n  namespace: default\ndata:\n  v: VALUE\n"
		for _, value := range []string{"one", "two"} {
			out := kv.run("apply", "--server-side", "-f", kv.writeFile("cm.yaml", strings.Replace(doc, "VALUE", value, 1)))
			mustContain(t, "kubectl "+v+" apply --server-side", out, "configmap/"+name+" serverside-applied")
		}
		if got := kv.run("get", "configmap", name, "-o", "jsonpath={.data.v}"); got != "two" {
			t.Fatalf("kubectl %s: value %q after the second apply", v, got)
		}
	}
}
