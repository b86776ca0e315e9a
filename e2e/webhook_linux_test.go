package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiff-io/skiff/e2e/testutil"
	rtestutil "github.com/skiff-io/skiff/runtime/testutil"
	"github.com/skiff-io/skiff/server/pki"
)

// webhookPodCluster starts a one-node cluster running the webhook server
// (testdata/webhookserver) in pod default/hook behind Service hook, with a
// certificate for hook.default.svc from the returned CA; dir is the
// test's scratch directory.
func webhookPodCluster(t *testing.T) (*testutil.NetCluster, *pki.CA, string) {
	needRealContainers(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "webhook")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./testdata/webhookserver")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the webhook server: %v\n%s", err, out)
	}
	binData, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.GenerateCA("webhook-pod-ca")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueServer("hook.default.svc", []string{"hook.default.svc"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const ref = "skiff.test/webhook:1"
	img, err := rtestutil.BusyboxImage(rtestutil.BusyboxPath, v1.Config{Cmd: []string{"/webhook"}},
		rtestutil.File{Path: "webhook", Mode: 0o755, Data: string(binData)},
		rtestutil.File{Path: "tls", Dir: true},
		rtestutil.File{Path: "tls/cert.pem", Mode: 0o644, Data: string(certPEM)},
		rtestutil.File{Path: "tls/key.pem", Mode: 0o644, Data: string(keyPEM)})
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "webhook.tar")
	if err := rtestutil.WriteDockerArchive(archive, ref, img); err != nil {
		t.Fatal(err)
	}
	c := testutil.NewNetCluster(t, testutil.NetClusterOptions{Nodes: 1, ImageArchives: []string{archive}})
	ctx := context.Background()
	grace := int64(1)
	c.RunPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hook", Namespace: "default", Labels: map[string]string{"app": "hook"}},
		Spec: corev1.PodSpec{NodeName: c.NodeName(0), TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{Name: "main", Image: ref, ImagePullPolicy: corev1.PullNever,
				Ports: []corev1.ContainerPort{{ContainerPort: 8443}}}}},
	})
	if _, err := c.CS.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "hook"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "hook"},
			Ports: []corev1.ServicePort{{Port: 443, TargetPort: intstr.FromInt32(8443)}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return c, ca, dir
}

// TestServiceWebhookPod: admission webhooks served by a pod of the cluster
// and reached through clientConfig.service, their certificate (for
// hook.default.svc) verified with the caBundle by the pod's kubelet, through
// whose pod proxy the master reaches it: the validating one refuses a
// labelled ConfigMap, the mutating one labels the others, and one with
// another CA's bundle fails.
func TestServiceWebhookPod(t *testing.T) {
	c, ca, dir := webhookPodCluster(t)
	caB64 := base64.StdEncoding.EncodeToString(ca.CertPEM)
	hook := func(kind, name, path string) string {
		return `apiVersion: admissionregistration.k8s.io/v1
kind: ` + kind + `
metadata: {name: ` + name + `}
webhooks:
- name: ` + name + `.skiff.test
  clientConfig:
    service: {namespace: default, name: hook, path: ` + path + `}
    caBundle: ` + caB64 + `
  rules: [{operations: ["CREATE"], apiGroups: [""], apiVersions: ["v1"], resources: ["configmaps"]}]
  namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: default}}
  sideEffects: None
  admissionReviewVersions: ["v1"]
`
	}
	apply := func(name, manifest string) (string, error) {
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, []byte(manifest), 0o600); err != nil {
			t.Fatal(err)
		}
		return c.Kubectl("apply", "-f", path)
	}
	for _, m := range []struct{ name, manifest string }{
		{"validate", hook("ValidatingWebhookConfiguration", "pod-validate", "/validate")},
		{"mutate", hook("MutatingWebhookConfiguration", "pod-mutate", "/mutate")},
	} {
		if out, err := apply(m.name, m.manifest); err != nil {
			t.Fatalf("apply %s: %v\n%s", m.name, err, out)
		}
	}
	cm := func(name, labels string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n  namespace: default\n  labels: {" + labels + "}\n"
	}
	// The endpoint becomes ready and the server listens shortly after the
	// pod runs: poll until the webhook answers.
	var (
		out string
		err error
	)
	if err := testutil.Poll(60*time.Second, func() error {
		out, err = apply("forbidden", cm("forbidden", "forbidden: x"))
		if err == nil {
			t.Fatalf("labelled ConfigMap accepted:\n%s", out)
		}
		if !strings.Contains(out, `admission webhook "pod-validate.skiff.test" denied the request: refused by the pod`) {
			return fmt.Errorf("not refused by the pod yet: %s", out)
		}
		return nil
	}); err != nil {
		t.Fatalf("webhook in a pod: %v\n--- node log ---\n%s", err, c.NodeLog(0, 30))
	}
	if out, err := apply("plain", cm("plain", "app: plain")); err != nil {
		t.Fatalf("plain ConfigMap: %v\n%s", err, out)
	}
	got, err := c.Kubectl("get", "configmap", "plain", "-o", "jsonpath={.metadata.labels.served-by}")
	if err != nil || got != "pod" {
		t.Fatalf("label from the mutating webhook: %q %v", got, err)
	}

	// The master reaches the pod through its node's kubelet (/podproxy),
	// which verifies the pod's certificate with the caBundle: a bundle of
	// another CA is refused there.
	other, err := pki.GenerateCA("another-ca")
	if err != nil {
		t.Fatal(err)
	}
	wrong := strings.ReplaceAll(hook("ValidatingWebhookConfiguration", "wrong-ca", "/validate"), caB64, base64.StdEncoding.EncodeToString(other.CertPEM))
	wrong = strings.Replace(wrong, "  sideEffects: None", "  objectSelector: {matchLabels: {wrong-ca: \"yes\"}}\n  sideEffects: None", 1)
	if out, err := apply("wrong", wrong); err != nil {
		t.Fatalf("apply wrong-ca: %v\n%s", err, out)
	}
	out, err = apply("wrongcm", cm("wrongcm", `wrong-ca: "yes"`))
	if err == nil || !strings.Contains(out, `failed calling webhook "wrong-ca.skiff.test"`) ||
		!strings.Contains(out, "error trying to reach pod") || !strings.Contains(out, "certificate") {
		t.Fatalf("webhook with another CA's bundle: %v\n%s", err, out)
	}
	t.Logf("another CA's bundle: %s", out)
}
