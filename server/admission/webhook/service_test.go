package webhook

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/pki"
)

// serviceHook serves a refusing webhook with a certificate for certName
// and stores Service webhooks/hook (port 443) with an EndpointSlice that
// points at it.
func serviceHook(t *testing.T, e *env, certName string) []byte {
	ca, err := pki.GenerateCA("hook-ca")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueServer(certName, []string{certName}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rev admissionv1.AdmissionReview
		_ = json.NewDecoder(r.Body).Decode(&rev)
		rev.Response = &admissionv1.AdmissionResponse{UID: rev.Request.UID, Result: &metav1.Status{Message: "refused at " + r.URL.Path}}
		rev.Request = nil
		_ = json.NewEncoder(w).Encode(&rev)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	host, portStr, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portStr)
	e.create("namespaces", "", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "webhooks"}})
	e.create("services", "", &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "hook", Namespace: "webhooks"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.43.0.50", ClusterIPs: []string{"10.43.0.50"}, Ports: []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP}}}})
	e.create("endpointslices", discoveryv1.GroupName, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "hook-1", Namespace: "webhooks", Labels: map[string]string{discoveryv1.LabelServiceName: "hook"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{host}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("https"), Port: ptr(int32(port)), Protocol: ptr(corev1.ProtocolTCP)}},
	})
	return ca.CertPEM
}

func serviceConfig(ca []byte) *admissionregistrationv1.ValidatingWebhookConfiguration {
	c := validating("svc", "", ca, admissionregistrationv1.Fail, 5)
	c.Webhooks[0].ClientConfig = admissionregistrationv1.WebhookClientConfig{
		Service:  &admissionregistrationv1.ServiceReference{Namespace: "webhooks", Name: "hook", Path: ptr("/validate")},
		CABundle: ca,
	}
	return c
}

func TestServiceClientConfig(t *testing.T) {
	e := newEnv(t)
	ca := serviceHook(t, e, "hook.webhooks.svc")
	e.create("validatingwebhookconfigurations", admissionregistrationv1.GroupName, serviceConfig(ca))
	err := e.d.Validate(context.Background(), e.snap(), e.attrs("default", nil), nil)
	if err == nil || !strings.Contains(err.Error(), `admission webhook "svc.example.com" denied the request: refused at /validate`) {
		t.Fatalf("webhook behind a Service: %v", err)
	}
}

func TestServiceClientConfigVerifiesServiceName(t *testing.T) {
	e := newEnv(t)
	ca := serviceHook(t, e, "other.webhooks.svc")
	e.create("validatingwebhookconfigurations", admissionregistrationv1.GroupName, serviceConfig(ca))
	err := e.d.Validate(context.Background(), e.snap(), e.attrs("default", nil), nil)
	if err == nil || !strings.Contains(err.Error(), "hook.webhooks.svc") || !strings.Contains(err.Error(), "failed calling webhook") {
		t.Fatalf("certificate for another name: %v, want a verification error", err)
	}
}
