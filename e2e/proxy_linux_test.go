package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// TestProxySubresources (issue 17): kubectl proxy, then services/proxy,
// pods/proxy (http: and https: forms) and nodes/proxy through the API
// server to a pod and a kubelet on another node than the master's; RBAC
// decides who may.
func TestProxySubresources(t *testing.T) {
	needRealContainers(t)
	c := testutil.NewNetCluster(t, testutil.NetClusterOptions{Nodes: 2, ImageArchives: []string{netImageArchive(t)}})
	ctx := context.Background()
	c.RunPod(netPod("web", c.NodeName(1), map[string]string{"app": "web"}, httpdScript))
	// A pod that declares no container port: pods/NAME/proxy goes to
	// port 80 (the DNS conformance tests read their probers' results so).
	web80 := netPod("web80", c.NodeName(1), nil, "exec httpd -f -p 80 -h /www")
	web80.Spec.Containers[0].Ports = nil
	c.RunPod(web80)
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "web"},
		Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
	}}
	if _, err := c.CS.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	base := kubectlProxy(t, c.Master.Kubeconfig(), c.Master.URL())
	hc := &http.Client{Timeout: 10 * time.Second}
	get := func(path, want string) {
		t.Helper()
		var last string
		err := testutil.Poll(60*time.Second, func() error {
			code, body, err := httpGetBody(hc, base+path)
			if err != nil {
				return err
			}
			last = fmt.Sprintf("%d %s", code, body)
			if code != http.StatusOK || !strings.Contains(body, want) {
				return fmt.Errorf("GET %s: %s", path, last)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%v\n--- master log ---\n%s\n--- node 1 log ---\n%s", err, c.NodeLog(0, 20), c.NodeLog(1, 20))
		}
	}
	get("/api/v1/namespaces/default/services/web:80/proxy/", "hello from httpd")
	get("/api/v1/namespaces/default/services/web:http/proxy/index.html", "hello from httpd")
	get("/api/v1/namespaces/default/pods/web:8080/proxy/index.html", "hello from httpd")
	get("/api/v1/namespaces/default/pods/web80/proxy/index.html", "hello from httpd")
	// .../proxy with nothing after it: GET and HEAD are redirected to
	// .../proxy/ (301), as kube-apiserver does (conformance "A set of valid
	// responses are returned for both pod and service Proxy").
	noFollow := &http.Client{Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, p := range []string{"/api/v1/namespaces/default/pods/web:8080/proxy", "/api/v1/namespaces/default/services/web:80/proxy"} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			r, err := http.NewRequest(method, base+p+"?method="+method, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := noFollow.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != p+"/?method="+method {
				t.Fatalf("%s %s: %d, Location %q; want 301 to %s/?method=%s", method, p, resp.StatusCode, resp.Header.Get("Location"), p, method)
			}
		}
	}
	// A CGI script with a query string answers through the proxy.
	get("/api/v1/namespaces/default/pods/http:web:8080/proxy/cgi-bin/ip?x=1", ".")
	// Absolute links in HTML come back under the proxy path, as
	// kube-apiserver rewrites them (the conformance test "Proxy should
	// proxy through a service and a pod").
	get("/api/v1/namespaces/default/pods/web:8080/proxy/link.html", `<a href="/api/v1/namespaces/default/pods/web:8080/proxy/rewriteme">test</a>`)
	get("/api/v1/namespaces/default/services/web:80/proxy/link.html", `<a href="/api/v1/namespaces/default/services/web:80/proxy/rewriteme">test</a>`)
	get("/api/v1/nodes/"+c.NodeName(1)+"/proxy/healthz", "ok")
	get("/api/v1/nodes/"+c.NodeName(1)+"/proxy/pods", `"name":"web"`)
	// The form the conformance suite's failure handler and kubelet stats
	// helpers use: NAME:10250 (the kubelet's port).
	get("/api/v1/nodes/"+c.NodeName(1)+":10250/proxy/pods", `"name":"web"`)
	// ... and exactly as its failure handler asks: client-go over protobuf,
	// decoded as a PodList.
	pcfg := c.Master.RESTConfig()
	pcfg.ContentType = "application/vnd.kubernetes.protobuf"
	pcs := kubernetes.NewForConfigOrDie(pcfg)
	var kubeletPods corev1.PodList
	if err := pcs.CoreV1().RESTClient().Get().Resource("nodes").SubResource("proxy").Name(c.NodeName(1) + ":10250").
		Suffix("pods").Do(ctx).Into(&kubeletPods); err != nil || len(kubeletPods.Items) == 0 {
		t.Fatalf("nodes/NAME:10250/proxy/pods through client-go: %v %d pods", err, len(kubeletPods.Items))
	}
	// An https: target that does not speak TLS fails with 503, not a
	// hang or a 200.
	code, body, err := httpGetBody(hc, base+"/api/v1/namespaces/default/pods/https:web:8080/proxy/")
	if err != nil || code != http.StatusServiceUnavailable && code != http.StatusBadGateway {
		t.Fatalf("https: to a plain HTTP port: %d %v %s", code, err, body)
	}
	// POST goes through too (httpd answers a POST to a file with 501 or
	// the file, but never the API server's 405).
	resp, err := hc.Post(base+"/api/v1/namespaces/default/pods/web:8080/proxy/index.html", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusMethodNotAllowed || resp.Header.Get("Content-Type") == "application/json" {
		t.Fatalf("POST through pods/proxy: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	// RBAC: a "view" service account may not proxy (403); an "edit" one
	// may proxy to pods and services but not to nodes.
	for sa, role := range map[string]string{"viewer": "view", "editor": "edit"} {
		if _, err := c.CS.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: sa},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: "default"}}}
		if _, err := c.CS.RbacV1().RoleBindings("default").Create(ctx, rb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	client := func(sa string) *http.Client {
		tr, err := c.CS.CoreV1().ServiceAccounts("default").CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cfg := rest.AnonymousClientConfig(c.Master.RESTConfig())
		cfg.BearerToken = tr.Status.Token
		h, err := rest.HTTPClientFor(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	viewer, editor := client("viewer"), client("editor")
	for _, tc := range []struct {
		client *http.Client
		who    string
		path   string
		want   int
	}{
		{viewer, "viewer", "/api/v1/namespaces/default/services/web:80/proxy/", http.StatusForbidden},
		{viewer, "viewer", "/api/v1/namespaces/default/pods/web:8080/proxy/", http.StatusForbidden},
		{editor, "editor", "/api/v1/nodes/" + c.NodeName(1) + "/proxy/healthz", http.StatusForbidden},
		{editor, "editor", "/api/v1/namespaces/default/services/web:80/proxy/", http.StatusOK},
		{editor, "editor", "/api/v1/namespaces/default/pods/web:8080/proxy/", http.StatusOK},
	} {
		err := testutil.Poll(20*time.Second, func() error {
			code, body, err := httpGetBody(tc.client, c.Master.URL()+tc.path)
			if err != nil {
				return err
			}
			if code != tc.want {
				return fmt.Errorf("%s GET %s: %d, want %d: %s", tc.who, tc.path, code, tc.want, body)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
