package apiserver_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

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
