package apiserver_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

// TestWebhookOnStatusSubresource: a webhook for services/status is called
// on status updates (with subResource "status") and not on plain updates.
func TestWebhookOnStatusSubresource(t *testing.T) {
	srv := apiservertest.NewServer(t, apiservertest.Options{Admission: true})
	cs := srv.Clientset(t)
	ctx := context.Background()
	var calls atomic.Int32
	hook := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rev admissionv1.AdmissionReview
		_ = json.NewDecoder(r.Body).Decode(&rev)
		calls.Add(1)
		resp := &admissionv1.AdmissionResponse{UID: rev.Request.UID, Allowed: false,
			Result: &metav1.Status{Message: "status of " + rev.Request.Resource.Resource + "/" + rev.Request.SubResource + " refused"}}
		rev.Request, rev.Response = nil, resp
		_ = json.NewEncoder(w).Encode(&rev)
	}))
	t.Cleanup(hook.Close)
	url := hook.URL
	none := admissionregistrationv1.SideEffectClassNone
	_, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "status"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name: "status.skiff.test",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url,
				CABundle: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hook.Certificate().Raw})},
			Rules: []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{"UPDATE"},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"services/status"}}}},
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, err := cs.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Labels = map[string]string{"a": "b"}
	if svc, err = cs.CoreV1().Services("default").Update(ctx, svc, metav1.UpdateOptions{}); err != nil || calls.Load() != 0 {
		t.Fatalf("plain update: %v, %d webhook calls", err, calls.Load())
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}}
	_, err = cs.CoreV1().Services("default").UpdateStatus(ctx, svc, metav1.UpdateOptions{})
	if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), `admission webhook "status.skiff.test" denied the request: status of services/status refused`) {
		t.Fatalf("status update: %v", err)
	}
}

// TestWebhookDeniesAttach follows the upstream conformance test "should be
// able to deny attaching pod": a validating webhook whose rules list
// CONNECT on pods/attach sees the PodAttachOptions of `kubectl attach -i
// -c container1` and its denial reaches the client at once (no stream).
func TestWebhookDeniesAttach(t *testing.T) {
	srv := apiservertest.NewServer(t, apiservertest.Options{Admission: true})
	cs := srv.Clientset(t)
	ctx := context.Background()
	var seen atomic.Value
	hook := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rev admissionv1.AdmissionReview
		_ = json.NewDecoder(r.Body).Decode(&rev)
		req := rev.Request
		var opts corev1.PodAttachOptions
		_ = json.Unmarshal(req.Object.Raw, &opts)
		seen.Store(string(req.Operation) + " " + req.Kind.Kind + " " + req.Resource.Resource + "/" + req.SubResource + " " + req.Name)
		resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
		if opts.Stdin && opts.Container == "container1" && opts.Kind == "PodAttachOptions" {
			resp = &admissionv1.AdmissionResponse{UID: req.UID, Allowed: false,
				Result: &metav1.Status{Reason: "attaching to pod 'to-be-attached-pod' is not allowed"}}
		}
		rev.Request, rev.Response = nil, resp
		_ = json.NewEncoder(w).Encode(&rev)
	}))
	t.Cleanup(hook.Close)
	url := hook.URL
	none := admissionregistrationv1.SideEffectClassNone
	if _, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "deny-attach"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name: "deny-attaching-pod.k8s.io",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url,
				CABundle: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hook.Certificate().Raw})},
			Rules: []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{"CONNECT"},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods/attach"}}}},
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := testPod("to-be-attached-pod", "n1")
	pod.Spec.Containers[0].Name = "container1"
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := cs.CoreV1().RESTClient().Post().Namespace("default").Resource("pods").Name("to-be-attached-pod").SubResource("attach").
		Param("stdin", "true").Param("stdout", "true").Param("container", "container1").Do(ctx).Error()
	if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), `admission webhook "deny-attaching-pod.k8s.io" denied the request: attaching to pod 'to-be-attached-pod' is not allowed`) {
		t.Fatalf("attach: %v, want the webhook's denial", err)
	}
	if got, _ := seen.Load().(string); got != "CONNECT PodAttachOptions pods/attach to-be-attached-pod" {
		t.Fatalf("the webhook saw %q", got)
	}
	// The real kubectl (WebSocket, then SPDY) fails at once with it.
	if _, err := exec.LookPath("/usr/bin/kubectl"); err == nil {
		running, err := cs.CoreV1().Pods("default").Get(ctx, "to-be-attached-pod", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		running.Status.Phase = corev1.PodRunning
		if _, err := cs.CoreV1().Pods("default").UpdateStatus(ctx, running, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		kctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(kctx, "/usr/bin/kubectl", "--kubeconfig", writeKubeconfig(t, srv), "--token", apiservertest.Token,
			"attach", "-n", "default", "to-be-attached-pod", "-i", "-c=container1").CombinedOutput()
		if err == nil || kctx.Err() != nil || !strings.Contains(string(out), "attaching to pod 'to-be-attached-pod' is not allowed") {
			t.Fatalf("kubectl attach: %v (timed out: %v): %s", err, kctx.Err() != nil, out)
		}
	}
	// Without stdin the webhook allows it; the request goes on to the
	// kubelet (none here: 503).
	err = cs.CoreV1().RESTClient().Post().Namespace("default").Resource("pods").Name("to-be-attached-pod").SubResource("attach").
		Param("stdout", "true").Param("container", "container1").Do(ctx).Error()
	if !apierrors.IsServiceUnavailable(err) {
		t.Fatalf("allowed attach: %v, want 503 (no kubelet)", err)
	}
}
