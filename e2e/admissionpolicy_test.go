package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// maxReplicasYAML limits deployments' replicas to the value in a
// ConfigMap (the param), except in namespaces labelled policy=exempt.
const maxReplicasYAML = `apiVersion: v1
kind: ConfigMap
metadata: {name: replica-limits, namespace: default}
data: {maxReplicas: "5"}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: max-replicas}
spec:
  failurePolicy: Fail
  paramKind: {apiVersion: v1, kind: ConfigMap}
  matchConstraints:
    resourceRules:
    - apiGroups: [apps]
      apiVersions: [v1]
      operations: [CREATE, UPDATE]
      resources: [deployments]
  variables:
  - {name: max, expression: "int(params.data.maxReplicas)"}
  validations:
  - expression: "object.spec.replicas <= variables.max"
    messageExpression: "'replicas must be at most ' + string(variables.max)"
    reason: Invalid
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: max-replicas-binding}
spec:
  policyName: max-replicas
  validationActions: [Deny]
  paramRef: {name: replica-limits, namespace: default, parameterNotFoundAction: Deny}
  matchResources:
    namespaceSelector:
      matchExpressions:
      - {key: policy, operator: NotIn, values: [exempt]}
`

// warnReplicasYAML warns (and audits) above 2 replicas.
const warnReplicasYAML = `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: few-replicas}
spec:
  matchConstraints:
    resourceRules:
    - {apiGroups: [apps], apiVersions: [v1], operations: [CREATE], resources: [deployments]}
  validations:
  - {expression: "object.spec.replicas <= 2", message: "more than 2 replicas"}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: few-replicas-binding}
spec:
  policyName: few-replicas
  validationActions: [Warn, Audit]
`

const badPolicyYAML = `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: broken}
spec:
  matchConstraints:
    resourceRules:
    - {apiGroups: [apps], apiVersions: [v1], operations: [CREATE], resources: [deployments]}
  validations:
  - expression: "object.spec.replicas <="
`

// TestKubectlValidatingAdmissionPolicy applies a policy with a ConfigMap
// param and its binding with the stock kubectl, and checks the denial
// kube-apiserver gives, the namespaceSelector, a Warn binding's kubectl
// warning, and the 422 of a policy whose CEL does not compile.
func TestKubectlValidatingAdmissionPolicy(t *testing.T) {
	if _, err := os.Stat("/usr/bin/kubectl"); err != nil {
		t.Skip("kubectl not installed at /usr/bin/kubectl")
	}
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "vap"})
	m.Start()
	m.WaitReady(30 * time.Second)
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
	run := func(args ...string) string {
		t.Helper()
		out, err := kubectl(ctx, m.Kubeconfig(), args...)
		if err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
		return out
	}
	fail := func(want string, args ...string) {
		t.Helper()
		out, err := kubectl(ctx, m.Kubeconfig(), args...)
		if err == nil || !strings.Contains(out, want) {
			t.Fatalf("kubectl %v: err %v, want failure with %q:\n%s", args, err, want, out)
		}
	}

	run("apply", "-f", file("policy.yaml", maxReplicasYAML))
	out := run("get", "validatingadmissionpolicies")
	if !strings.Contains(out, "VALIDATIONS") || !strings.Contains(out, "PARAMKIND") || !strings.Contains(out, "v1/ConfigMap") {
		t.Fatalf("kubectl get validatingadmissionpolicies:\n%s", out)
	}
	if out := run("get", "validatingadmissionpolicybindings"); !strings.Contains(out, "max-replicas") || !strings.Contains(out, "default/replica-limits") {
		t.Fatalf("kubectl get validatingadmissionpolicybindings:\n%s", out)
	}

	// Denied with kube-apiserver's message.
	fail(`deployments.apps "big" is forbidden: ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-binding' denied request: replicas must be at most 5`,
		"create", "deployment", "big", "--image=registry.example/app", "--replicas=7")
	run("create", "deployment", "small", "--image=registry.example/app", "--replicas=3")
	fail("replicas must be at most 5", "scale", "deployment", "small", "--replicas=6")

	// A namespace the binding's namespaceSelector leaves out.
	run("create", "namespace", "free")
	run("label", "namespace", "free", "policy=exempt")
	run("-n", "free", "create", "deployment", "big", "--image=registry.example/app", "--replicas=7")

	// A Warn binding: created, with kubectl's "Warning: ..." line.
	run("apply", "-f", file("warn.yaml", warnReplicasYAML))
	out = run("create", "deployment", "mid", "--image=registry.example/app", "--replicas=4")
	if !strings.Contains(out, "Warning: Validation failed for ValidatingAdmissionPolicy 'few-replicas' with binding 'few-replicas-binding': more than 2 replicas") {
		t.Fatalf("no warning:\n%s", out)
	}

	// The leader type-checks policies against the matched kinds' schemas:
	// a field deployments lack is a warning in the status.
	typo := strings.NewReplacer("few-replicas", "typo", "object.spec.replicas <= 2", "object.spec.replicaz <= 2").Replace(strings.SplitN(warnReplicasYAML, "---", 2)[0])
	run("apply", "-f", file("typo.yaml", typo))
	if err := testutil.Poll(30*time.Second, func() error {
		out, err := kubectl(ctx, m.Kubeconfig(), "get", "validatingadmissionpolicy", "typo", "-o", "jsonpath={.status.typeChecking.expressionWarnings[0].fieldRef}: {.status.typeChecking.expressionWarnings[0].warning}")
		if err != nil || !strings.Contains(out, "spec.validations[0].expression: apps/v1, Kind=Deployment: ERROR: <input>:1:12: undefined field 'replicaz'") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}); err != nil {
		t.Fatalf("typeChecking: %v", err)
	}

	// A policy whose expression does not compile: 422 naming the field.
	fail(`spec.validations[0].expression: Invalid value: "object.spec.replicas <=": compilation failed`,
		"apply", "-f", file("bad.yaml", badPolicyYAML))
}
