package ingress

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// TestSync: the controller's view of its Ingresses without a network:
// TLS by SNI with the default certificate for a missing Secret (and one
// SecretNotFound Event), 503 without ready endpoints, 404 without a rule,
// and only the Ingresses of its classes.
func TestSync(t *testing.T) {
	certPEM, keyPEM := testCert(t, "a.example.com")
	cs := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "tls-a"},
		Data: map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM}})
	c, err := New(Config{Client: cs, NodeName: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	a := ing("a", time.Hour, "", map[string][]p{"a.example.com": {{"/", networkingv1.PathTypePrefix, "web"}}})
	a.UID = "uid-a"
	a.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"a.example.com"}, SecretName: "tls-a"}, {Hosts: []string{"*.example.org"}, SecretName: "gone"}}
	other := ing("other", time.Hour, "", map[string][]p{"o.example.com": {{"/", networkingv1.PathTypePrefix, "web"}}})
	otherClass := "nginx"
	other.Spec.IngressClassName = &otherClass
	classes := []*networkingv1.IngressClass{{ObjectMeta: metav1.ObjectMeta{Name: "skiff", Annotations: map[string]string{AnnotationDefaultClass: "true"}},
		Spec: networkingv1.IngressClassSpec{Controller: ControllerName}}}
	ours := Ours([]*networkingv1.Ingress{a, other}, classes)
	if len(ours) != 1 || ours[0].Name != "a" {
		t.Fatalf("ours: %v", ours)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.43.0.9", Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}}
	notReady := false
	port, name, tcp := int32(8080), "", corev1.ProtocolTCP
	slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-1",
		Labels: map[string]string{discoveryv1.LabelServiceName: "web"}}, AddressType: discoveryv1.AddressTypeIPv4,
		Ports:     []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &tcp}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.42.0.7"}, Conditions: discoveryv1.EndpointConditions{Ready: &notReady}}}}
	c.sync(context.Background(), ours, []*corev1.Service{svc}, []*discoveryv1.EndpointSlice{slice})
	c.sync(context.Background(), ours, []*corev1.Service{svc}, []*discoveryv1.EndpointSlice{slice})

	for host, want := range map[string]string{"a.example.com": "a.example.com", "x.example.org": DefaultCertificateCN, "": DefaultCertificateCN} {
		cert, err := c.certificate(&tls.ClientHelloInfo{ServerName: host})
		if err != nil {
			t.Fatal(err)
		}
		leaf := cert.Leaf
		if leaf == nil {
			if leaf, err = parseLeaf(cert); err != nil {
				t.Fatal(err)
			}
		}
		if leaf.Subject.CommonName != want {
			t.Errorf("SNI %q: certificate %q, want %q", host, leaf.Subject.CommonName, want)
		}
	}
	evs, err := cs.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
	if err != nil || len(evs.Items) != 1 || evs.Items[0].Reason != "SecretNotFound" || evs.Items[0].InvolvedObject.Name != "a" {
		t.Fatalf("events after two syncs: %+v %v", evs, err)
	}
	for _, tc := range []struct {
		host string
		code int
	}{{"a.example.com", http.StatusServiceUnavailable}, {"o.example.com", http.StatusNotFound}} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "http://"+tc.host+"/", nil)
		c.ServeHTTP(w, r)
		if w.Code != tc.code {
			t.Errorf("%s: %d, want %d", tc.host, w.Code, tc.code)
		}
	}
}

func testCert(t *testing.T, host string) ([]byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

func parseLeaf(c *tls.Certificate) (*x509.Certificate, error) {
	return x509.ParseCertificate(c.Certificate[0])
}
