package e2e

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
	"github.com/skiff-io/skiff/server/pki"
)

// webhookServer serves admission webhooks over HTTPS on a 127.0.0.x
// address with its own CA: /deny refuses ConfigMaps labelled "forbidden",
// /mutate labels ConfigMaps mutated=yes, /hang answers nothing until the
// caller gives up. It returns the base URL and the CA bundle.
func webhookServer(t *testing.T) (string, []byte) {
	t.Helper()
	ca, err := pki.GenerateCA("webhook-test-ca")
	if err != nil {
		t.Fatal(err)
	}
	ip := testutil.LoopbackAddr(t)
	certPEM, keyPEM, err := ca.IssueServer("webhook", nil, []net.IP{net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	review := func(w http.ResponseWriter, r *http.Request, decide func(op admissionv1.Operation, cm *corev1.ConfigMap) *admissionv1.AdmissionResponse) {
		var rev admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&rev); err != nil || rev.Request == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		raw := rev.Request.Object.Raw
		if rev.Request.Operation == admissionv1.Delete {
			raw = rev.Request.OldObject.Raw
		}
		var cm corev1.ConfigMap
		if err := json.Unmarshal(raw, &cm); err != nil {
			http.Error(w, "bad object", http.StatusBadRequest)
			return
		}
		resp := decide(rev.Request.Operation, &cm)
		resp.UID = rev.Request.UID
		rev.Request, rev.Response = nil, resp
		_ = json.NewEncoder(w).Encode(&rev)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/deny", func(w http.ResponseWriter, r *http.Request) {
		review(w, r, func(op admissionv1.Operation, cm *corev1.ConfigMap) *admissionv1.AdmissionResponse {
			if _, keep := cm.Labels["protected"]; keep && op == admissionv1.Delete {
				return &admissionv1.AdmissionResponse{Result: &metav1.Status{Message: "protected ConfigMaps may not be deleted"}}
			}
			if _, bad := cm.Labels["forbidden"]; bad {
				return &admissionv1.AdmissionResponse{Result: &metav1.Status{Message: "the label forbidden is not allowed"}}
			}
			return &admissionv1.AdmissionResponse{Allowed: true}
		})
	})
	mux.HandleFunc("/mutate", func(w http.ResponseWriter, r *http.Request) {
		review(w, r, func(op admissionv1.Operation, cm *corev1.ConfigMap) *admissionv1.AdmissionResponse {
			if op == admissionv1.Delete {
				return &admissionv1.AdmissionResponse{Allowed: true}
			}
			patch := `[{"op":"add","path":"/metadata/labels/mutated","value":"yes"}]`
			if cm.Labels == nil {
				patch = `[{"op":"add","path":"/metadata/labels","value":{"mutated":"yes"}}]`
			}
			pt := admissionv1.PatchTypeJSONPatch
			return &admissionv1.AdmissionResponse{Allowed: true, PatchType: &pt, Patch: []byte(patch)}
		})
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	})
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() {
		close(stop)
		_ = srv.Close()
	})
	return "https://" + ln.Addr().String(), ca.CertPEM
}

// TestAdmissionWebhooks: webhooks reached by URL with their CA bundle. A
// validating webhook refuses a labelled ConfigMap (kubectl shows its
// message) except in a namespace its namespaceSelector excludes or when its
// matchConditions (CEL) are false, and the
// delete of a protected one; a mutating
// webhook labels ConfigMaps; a webhook that hangs lets the request pass
// after its timeout with failurePolicy Ignore and refuses it with Fail,
// while other requests go through meanwhile.
func TestAdmissionWebhooks(t *testing.T) {
	m, run := kubectlMaster(t)
	base, caPEM := webhookServer(t)
	ca := base64.StdEncoding.EncodeToString(caPEM)
	dir := t.TempDir()
	apply := func(name, manifest string) (string, error) {
		t.Helper()
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, []byte(manifest), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		return kubectl(ctx, m.Kubeconfig(), "apply", "-f", path)
	}
	mustApply := func(name, manifest string) {
		t.Helper()
		if out, err := apply(name, manifest); err != nil {
			t.Fatalf("apply %s: %v\n%s", name, err, out)
		}
	}
	configMap := func(name, ns, labels string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n  namespace: " + ns + "\n  labels: {" + labels + "}\ndata: {a: b}\n"
	}
	hook := func(name, path, extra string) string {
		return `- name: ` + name + `.skiff.test
  clientConfig:
    url: ` + base + path + `
    caBundle: ` + ca + `
  rules:
  - operations: ["CREATE", "UPDATE", "DELETE"]
    apiGroups: [""]
    apiVersions: ["v1"]
    resources: ["configmaps"]
  sideEffects: None
  admissionReviewVersions: ["v1"]
` + extra
	}

	// Bad input: an http URL and no sideEffects are refused with their fields.
	out, err := apply("bad", `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: bad}
webhooks:
- name: bad.skiff.test
  clientConfig: {url: "http://127.0.0.1/x"}
  rules: [{operations: ["CREATE"], apiGroups: [""], apiVersions: ["v1"], resources: ["configmaps"]}]
  admissionReviewVersions: ["v1"]
`)
	if err == nil || !strings.Contains(out, "webhooks[0].clientConfig.url") || !strings.Contains(out, "webhooks[0].sideEffects") {
		t.Fatalf("invalid configuration: %v\n%s", err, out)
	}

	run("create", "namespace", "free")
	run("label", "namespace", "free", "webhooks=off")
	mustApply("deny", `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: deny}
webhooks:
`+hook("deny", "/deny", `  namespaceSelector:
    matchExpressions: [{key: webhooks, operator: NotIn, values: ["off"]}]
  matchConditions:
  - name: not-exempt
    expression: "request.name != 'exempt'"
`))
	mustApply("mutate", `apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: mutate}
webhooks:
`+hook("mutate", "/mutate", ""))

	out, err = apply("forbidden", configMap("forbidden", "default", "forbidden: x"))
	if err == nil || !strings.Contains(out, `admission webhook "deny.skiff.test" denied the request: the label forbidden is not allowed`) {
		t.Fatalf("labelled ConfigMap: %v\n%s", err, out)
	}
	mustApply("free", configMap("forbidden", "free", "forbidden: x"))
	mustApply("exempt", configMap("exempt", "default", "forbidden: x")) // matchConditions false
	mustApply("plain", configMap("plain", "default", "app: x"))
	if got := run("get", "configmap", "plain", "-o", "jsonpath={.metadata.labels.mutated}/{.metadata.labels.app}"); got != "yes/x" {
		t.Fatalf("mutated labels %q, want yes/x", got)
	}

	// DELETE: the validating webhook sees the old object.
	mustApply("protected", configMap("protected", "default", "protected: x"))
	if out, err := kubectl(context.Background(), m.Kubeconfig(), "delete", "configmap", "protected"); err == nil ||
		!strings.Contains(out, `admission webhook "deny.skiff.test" denied the request: protected ConfigMaps may not be deleted`) {
		t.Fatalf("delete of a protected ConfigMap: %v\n%s", err, out)
	}
	run("delete", "configmap", "plain")

	mustApply("hang", `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: hang}
webhooks:
`+hook("hang-ignore", "/hang", `  timeoutSeconds: 2
  failurePolicy: Ignore
  objectSelector: {matchLabels: {hang: ignore}}
`)+hook("hang-fail", "/hang", `  timeoutSeconds: 2
  failurePolicy: Fail
  objectSelector: {matchLabels: {hang: fail}}
`))
	start := time.Now()
	mustApply("ignore", configMap("ignore", "default", "hang: ignore"))
	if took := time.Since(start); took < 2*time.Second {
		t.Fatalf("hanging webhook with Ignore: passed after %v, before its 2 s timeout", took)
	}

	type result struct {
		out  string
		err  error
		took time.Duration
	}
	failed := make(chan result, 1)
	go func() {
		start := time.Now()
		out, err := apply("fail", configMap("fail", "default", "hang: fail"))
		failed <- result{out, err, time.Since(start)}
	}()
	// Other requests are not held up by the hanging call.
	otherStart := time.Now()
	mustApply("other", configMap("other", "default", "app: other"))
	if took := time.Since(otherStart); took > 1500*time.Millisecond {
		t.Errorf("a request beside a hanging webhook took %v", took)
	}
	r := <-failed
	if r.err == nil || !strings.Contains(r.out, `failed calling webhook "hang-fail.skiff.test"`) || r.took < 2*time.Second {
		t.Fatalf("hanging webhook with Fail: after %v: %v\n%s", r.took, r.err, r.out)
	}
}
