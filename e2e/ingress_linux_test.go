package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// TestIngressAndLoadBalancer (issue 17) on two real nodes, node-0 started
// with --disable ingress: the built-in ingress controller answers on
// node-1's ports 80 and 443 (node-0's are closed) for two hosts,
// by host and path, with the TLS Secret chosen by SNI; a backend pod that
// is not ready gets no traffic; an Ingress whose Secret is missing gets
// the default certificate and a Warning Event; the Ingresses' status lists
// node-1's address; a LoadBalancer Service's lists both node addresses,
// and the Service's port answers on both nodes.
func TestIngressAndLoadBalancer(t *testing.T) {
	needRealContainers(t)
	c := testutil.NewNetCluster(t, testutil.NetClusterOptions{Nodes: 2, ImageArchives: []string{netImageArchive(t)},
		ServerArgs: []string{"--disable", "ingress"}})
	ctx := context.Background()
	site := func(name, node, app string, ready bool) *corev1.Pod {
		p := webPod(name, node)
		p.Labels = map[string]string{"app": app}
		p.Spec.Containers[0].Command = []string{"sh", "-c", "mkdir -p /tmp/w/b && echo " + name + " > /tmp/w/index.html && echo " + name +
			" > /tmp/w/b/index.html && touch /tmp/ready && exec httpd -f -p 8080 -h /tmp/w"}
		if !ready {
			p.Spec.Containers[0].ReadinessProbe.Exec.Command = []string{"test", "-f", "/tmp/never"}
		}
		return p
	}
	c.RunPod(site("web-a", c.NodeName(0), "a", true))
	c.RunPod(site("web-b", c.NodeName(1), "b", true))
	if _, err := c.CS.CoreV1().Pods("default").Create(ctx, site("web-a-unready", c.NodeName(1), "a", false), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, app := range []string{"a", "b"} {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "svc-" + app},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": app},
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}}}
		if _, err := c.CS.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	certPEM, keyPEM := selfSignedPEM(t, "a.example.com")
	if _, err := c.CS.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "tls-a"},
		Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	prefix, exact := networkingv1.PathTypePrefix, networkingv1.PathTypeExact
	backend := func(svc string) networkingv1.IngressBackend {
		return networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Name: "http"}}}
	}
	rule := func(host string, paths ...networkingv1.HTTPIngressPath) networkingv1.IngressRule {
		return networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths}}}
	}
	for _, in := range []*networkingv1.Ingress{
		{ObjectMeta: metav1.ObjectMeta{Name: "two"}, Spec: networkingv1.IngressSpec{
			TLS: []networkingv1.IngressTLS{{Hosts: []string{"a.example.com"}, SecretName: "tls-a"}},
			Rules: []networkingv1.IngressRule{
				rule("a.example.com", networkingv1.HTTPIngressPath{Path: "/", PathType: &prefix, Backend: backend("svc-a")}),
				rule("b.example.com", networkingv1.HTTPIngressPath{Path: "/b", PathType: &prefix, Backend: backend("svc-b")},
					networkingv1.HTTPIngressPath{Path: "/index.html", PathType: &exact, Backend: backend("svc-a")}),
			}}},
	} {
		if _, err := c.CS.NetworkingV1().Ingresses("default").Create(ctx, in, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The other one with kubectl apply (OpenAPI validation on); a bad
	// path type is refused with its field.
	manifest := func(pathType string) string {
		f := filepath.Join(t.TempDir(), "ing.yaml")
		body := `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: missing}
spec:
  tls: [{hosts: [c.example.com], secretName: nope}]
  rules:
  - host: c.example.com
    http:
      paths: [{path: /, pathType: ` + pathType + `, backend: {service: {name: svc-b, port: {name: http}}}}]
`
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	if out, err := c.Kubectl("apply", "-f", manifest("Regex")); err == nil || !strings.Contains(out, "spec.rules[0].http.paths[0].pathType") {
		t.Fatalf("kubectl apply of a bad pathType: %v\n%s", err, out)
	}
	if out, err := c.Kubectl("apply", "-f", manifest("Prefix")); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	// kubectl create ingress and describe: "/*" is a Prefix rule.
	if out, err := c.Kubectl("create", "ingress", "simple", "--rule=d.example.com/*=svc-b:http"); err != nil {
		t.Fatalf("kubectl create ingress: %v\n%s", err, out)
	}
	if out, err := c.Kubectl("describe", "ingress", "simple"); err != nil || !strings.Contains(out, "svc-b:http") || !strings.Contains(out, "d.example.com") {
		t.Fatalf("kubectl describe ingress: %v\n%s", err, out)
	}

	// A client on node-0's host, its connections to node-1's address
	// whatever the URL's host (curl --resolve).
	target := c.NodeIP(1)
	var lastCert *x509.Certificate
	get := func(url string) (string, error) {
		cl := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				_, port, _ := net.SplitHostPort(addr)
				return (&net.Dialer{}).DialContext(ctx, "tcp4", net.JoinHostPort(target, port))
			},
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true, VerifyConnection: func(cs tls.ConnectionState) error {
				lastCert = cs.PeerCertificates[0]
				return nil
			}},
			DisableKeepAlives: true}}
		var body string
		err := c.InNode(0, func() error {
			resp, err := cl.Get(url)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			body = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
			return err
		})
		return body, err
	}
	expect := func(url, want string) {
		t.Helper()
		var got string
		err := testutil.Poll(60*time.Second, func() (err error) {
			if got, err = get(url); err == nil && got != want {
				err = fmt.Errorf("got %q", got)
			}
			return err
		})
		if err != nil {
			t.Fatalf("%s: %v (want %q)\n--- node-1 log ---\n%s", url, err, want, c.NodeLog(1, 30))
		}
	}
	expect("http://a.example.com/", "200 web-a")
	expect("http://b.example.com/b/", "200 web-b")
	expect("http://b.example.com/index.html", "200 web-a") // Exact
	expect("http://b.example.com/other", "404 404 page not found")
	expect("http://d.example.com/b/", "200 web-b")
	// The not-ready pod of svc-a never answers.
	for i := 0; i < 20; i++ {
		if got, err := get("http://a.example.com/"); err != nil || got != "200 web-a" {
			t.Fatalf("request %d to a.example.com: %q, %v", i, got, err)
		}
	}
	// TLS: a.example.com's own certificate by SNI; c.example.com's Secret
	// is missing: the default certificate, and an Event.
	expect("https://a.example.com/", "200 web-a")
	if lastCert.Subject.CommonName != "a.example.com" {
		t.Fatalf("certificate for a.example.com: %q", lastCert.Subject.CommonName)
	}
	expect("https://c.example.com/b/", "200 web-b")
	if lastCert.Subject.CommonName != "Skiff Ingress Default Certificate" {
		t.Fatalf("certificate for c.example.com: %q", lastCert.Subject.CommonName)
	}
	testutil.WaitFor(t, 30*time.Second, "SecretNotFound event on ingress missing", func() error {
		out, err := c.Kubectl("get", "events", "--field-selector", "involvedObject.name=missing", "-o", "jsonpath={.items[*].reason}")
		if err != nil || !strings.Contains(out, "SecretNotFound") {
			all, _ := c.Kubectl("get", "events")
			return fmt.Errorf("events: %q %v\n%s\n%s\n%s", out, err, all, c.NodeLog(0, 15), c.NodeLog(1, 15))
		}
		return nil
	})

	// node-0 (--disable ingress) has no listener on port 80.
	if err := c.InNode(1, func() error {
		conn, err := net.DialTimeout("tcp4", net.JoinHostPort(c.NodeIP(0), "80"), 2*time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	}); err == nil {
		t.Fatal("node-0, started with --disable ingress, accepts connections on port 80")
	}

	// Status: only node-1 runs the controller.
	testutil.WaitFor(t, 30*time.Second, "ingress status", func() error {
		out, err := c.Kubectl("get", "ingress", "two", "-o", "jsonpath={.spec.ingressClassName} {.status.loadBalancer.ingress[*].ip}")
		if err != nil || out != "skiff "+c.NodeIP(1) {
			return fmt.Errorf("class and addresses %q %v, want %q", out, err, "skiff "+c.NodeIP(1))
		}
		out, err = c.Kubectl("get", "ingress", "two")
		if err != nil || !strings.Contains(out, c.NodeIP(1)) || !strings.Contains(out, "80, 443") {
			return fmt.Errorf("kubectl get ingress: %q %v", out, err)
		}
		return nil
	})
	out, _ := c.Kubectl("get", "ingress,ingressclass")
	t.Logf("kubectl get ingress,ingressclass:\n%s", out)

	// A LoadBalancer Service: the node addresses, the port on each node.
	nodes := []string{c.NodeIP(0), c.NodeIP(1)}
	sort.Strings(nodes)
	both := strings.Join(nodes, ",")
	if _, err := c.CS.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "lb"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "b"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 8081, TargetPort: intstr.FromString("http")}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "LoadBalancer external IPs", func() error {
		out, err := c.Kubectl("get", "svc", "lb")
		if err != nil || !strings.Contains(out, both) {
			return fmt.Errorf("kubectl get svc lb: %q %v", out, err)
		}
		return nil
	})
	out, _ = c.Kubectl("get", "svc", "lb")
	t.Logf("kubectl get svc lb:\n%s", out)
	for i := range 2 {
		addr := net.JoinHostPort(c.NodeIP(i), "8081")
		testutil.WaitFor(t, 30*time.Second, "LoadBalancer port on "+addr, func() error {
			var body string
			err := c.InNode(1-i, func() (err error) { body, err = httpGet(addr); return })
			if err == nil && body != "web-b" {
				err = fmt.Errorf("answer %q", body)
			}
			return err
		})
	}
}

// selfSignedPEM makes a certificate and key for host.
func selfSignedPEM(t *testing.T, host string) ([]byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
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
