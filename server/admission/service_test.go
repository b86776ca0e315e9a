package admission_test

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-io/skiff/server/controller/controllertest"
	"github.com/skiff-io/skiff/server/servicealloc"
)

func service(name string, typ corev1.ServiceType, ip string, nodePort int32) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{
		Type: typ, ClusterIP: ip, Selector: map[string]string{"app": name},
		Ports: []corev1.ServicePort{{Port: 80, NodePort: nodePort}},
	}}
}

// causeOf returns the field cause of a 422, failing the test otherwise.
func causeOf(t *testing.T, err error) metav1.StatusCause {
	t.Helper()
	se, ok := err.(apierrors.APIStatus)
	if !ok || !apierrors.IsInvalid(err) || se.Status().Details == nil || len(se.Status().Details.Causes) != 1 {
		t.Fatalf("want a 422 with one cause, got %v", err)
	}
	return se.Status().Details.Causes[0]
}

func TestServiceClusterIPAllocation(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{Admission: true})
	svcs := e.Client.CoreV1().Services("default")
	cidr := netip.MustParsePrefix(servicealloc.DefaultServiceCIDR)

	// Concurrent creates get distinct addresses of the range.
	const n = 40
	var wg sync.WaitGroup
	ips := make([]string, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s, err := svcs.Create(e.Ctx, service(fmt.Sprintf("s%d", i), "", "", 0), metav1.CreateOptions{})
			errs[i] = err
			if err == nil {
				ips[i] = s.Spec.ClusterIP
			}
		}(i)
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, ip := range ips {
		if errs[i] != nil {
			t.Fatalf("create s%d: %v", i, errs[i])
		}
		a, err := netip.ParseAddr(ip)
		if err != nil || !cidr.Contains(a) || seen[ip] {
			t.Fatalf("s%d: cluster IP %q not a fresh address of %s", i, ip, cidr)
		}
		seen[ip] = true
	}
	got, err := svcs.Get(e.Ctx, "s0", metav1.GetOptions{})
	if err != nil || got.Spec.ClusterIP != ips[0] || len(got.Spec.ClusterIPs) != 1 || got.Spec.IPFamilies[0] != corev1.IPv4Protocol {
		t.Fatalf("stored: %+v %v", got.Spec, err)
	}

	// A requested address: out of range, taken, free.
	_, err = svcs.Create(e.Ctx, service("out", "", "10.99.0.5", 0), metav1.CreateOptions{})
	if c := causeOf(t, err); c.Field != "spec.clusterIPs[0]" || !strings.Contains(c.Message, "not in the valid range") {
		t.Fatalf("out of range: %+v", c)
	}
	_, err = svcs.Create(e.Ctx, service("dup", "", ips[0], 0), metav1.CreateOptions{})
	if c := causeOf(t, err); c.Field != "spec.clusterIPs[0]" || !strings.Contains(c.Message, "provided IP is already allocated") {
		t.Fatalf("taken: %+v", c)
	}
	if s, err := svcs.Create(e.Ctx, service("fixed", "", "10.43.0.10", 0), metav1.CreateOptions{}); err != nil || s.Spec.ClusterIP != "10.43.0.10" {
		t.Fatalf("requested free IP: %v", err)
	}
	// Released on delete: the address can be asked for again.
	if err := svcs.Delete(e.Ctx, "s0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if s, err := svcs.Create(e.Ctx, service("again", "", ips[0], 0), metav1.CreateOptions{}); err != nil || s.Spec.ClusterIP != ips[0] {
		t.Fatalf("released IP not reusable: %v", err)
	}
	// An update leaving the IP out keeps it.
	cur, _ := svcs.Get(e.Ctx, "again", metav1.GetOptions{})
	cur.Spec.ClusterIP, cur.Spec.ClusterIPs = "", nil
	cur.Labels = map[string]string{"x": "y"}
	if u, err := svcs.Update(e.Ctx, cur, metav1.UpdateOptions{}); err != nil || u.Spec.ClusterIP != ips[0] {
		t.Fatalf("update: %v", err)
	}

	// Headless and ExternalName Services get no address.
	h := service("headless", "", corev1.ClusterIPNone, 0)
	if s, err := svcs.Create(e.Ctx, h, metav1.CreateOptions{}); err != nil || s.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Fatalf("headless: %v", err)
	}
	x := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "ext"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"}}
	if s, err := svcs.Create(e.Ctx, x, metav1.CreateOptions{}); err != nil || s.Spec.ClusterIP != "" {
		t.Fatalf("external name: %+v %v", s, err)
	}
}

func TestServiceNodePortAllocation(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{Admission: true})
	svcs := e.Client.CoreV1().Services("default")
	a, err := svcs.Create(e.Ctx, service("a", corev1.ServiceTypeNodePort, "", 0), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	np := a.Spec.Ports[0].NodePort
	if np < 30000 || np > 32767 {
		t.Fatalf("node port %d", np)
	}
	_, err = svcs.Create(e.Ctx, service("b", corev1.ServiceTypeNodePort, "", np), metav1.CreateOptions{})
	if c := causeOf(t, err); c.Field != "spec.ports[0].nodePort" || !strings.Contains(c.Message, "provided port is already allocated") {
		t.Fatalf("taken: %+v", c)
	}
	_, err = svcs.Create(e.Ctx, service("c", corev1.ServiceTypeNodePort, "", 8080), metav1.CreateOptions{})
	if c := causeOf(t, err); c.Field != "spec.ports[0].nodePort" || !strings.Contains(c.Message, "not in the valid range") {
		t.Fatalf("out of range: %+v", c)
	}
	// NodePort -> ClusterIP frees the port; ClusterIP -> NodePort takes one.
	a.Spec.Type = corev1.ServiceTypeClusterIP
	a.Spec.Ports[0].NodePort = 0
	a.Spec.ExternalTrafficPolicy = ""
	if a, err = svcs.Update(e.Ctx, a, metav1.UpdateOptions{}); err != nil || a.Spec.Ports[0].NodePort != 0 {
		t.Fatalf("to ClusterIP: %v", err)
	}
	b, err := svcs.Create(e.Ctx, service("b", corev1.ServiceTypeNodePort, "", np), metav1.CreateOptions{})
	if err != nil || b.Spec.Ports[0].NodePort != np {
		t.Fatalf("freed port not reusable: %v", err)
	}
	a.Spec.Type = corev1.ServiceTypeNodePort
	if a, err = svcs.Update(e.Ctx, a, metav1.UpdateOptions{}); err != nil || a.Spec.Ports[0].NodePort == 0 || a.Spec.Ports[0].NodePort == np {
		t.Fatalf("to NodePort: %+v %v", a, err)
	}
	// Deleting b frees np.
	if err := svcs.Delete(e.Ctx, "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := svcs.Create(e.Ctx, service("d", corev1.ServiceTypeNodePort, "", np), metav1.CreateOptions{}); err != nil {
		t.Fatalf("port not freed by delete: %v", err)
	}
}

// A NodePort Service updated to ExternalName by a client that sends the
// rest of the object back (conformance "should be able to change the type
// from NodePort to ExternalName") is accepted, holds no cluster IP, and
// its address and node port are free for others.
func TestServiceNodePortToExternalName(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{Admission: true})
	svcs := e.Client.CoreV1().Services("default")
	a, err := svcs.Create(e.Ctx, service("a", corev1.ServiceTypeNodePort, "", 0), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ip, np := a.Spec.ClusterIP, a.Spec.Ports[0].NodePort
	a.Spec.Type = corev1.ServiceTypeExternalName
	a.Spec.ExternalName = "foo.example.com"
	a, err = svcs.Update(e.Ctx, a, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("NodePort -> ExternalName: %v", err)
	}
	if a.Spec.ClusterIP != "" || len(a.Spec.ClusterIPs) != 0 || len(a.Spec.IPFamilies) != 0 || a.Spec.Ports[0].NodePort != 0 {
		t.Fatalf("ExternalName keeps %+v", a.Spec)
	}
	b := service("b", corev1.ServiceTypeNodePort, ip, np)
	if _, err := svcs.Create(e.Ctx, b, metav1.CreateOptions{}); err != nil {
		t.Fatalf("address %s and node port %d not freed: %v", ip, np, err)
	}
	// ClusterIP -> ExternalName with clusterIP "" (the older test's form).
	c, err := svcs.Create(e.Ctx, service("c", "", "", 0), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.Spec.Type, c.Spec.ExternalName, c.Spec.ClusterIP = corev1.ServiceTypeExternalName, "bar.example.com", ""
	if c, err = svcs.Update(e.Ctx, c, metav1.UpdateOptions{}); err != nil || c.Spec.ClusterIP != "" || len(c.Spec.ClusterIPs) != 0 {
		t.Fatalf("ClusterIP -> ExternalName: %v %+v", err, c.Spec)
	}
}

// The service status lifecycle of the conformance test: a merge PATCH of
// /status with an annotation and a load balancer ingress keeps both, then
// an UpdateStatus adds a condition; the spec stays.
func TestServiceStatusLifecycle(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{Admission: true})
	svcs := e.Client.CoreV1().Services("default")
	if _, err := svcs.Create(e.Ctx, service("lb", corev1.ServiceTypeLoadBalancer, "", 0), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err := svcs.Patch(e.Ctx, "lb", types.MergePatchType,
		[]byte(`{"metadata":{"annotations":{"patchedstatus":"true"}},"status":{"loadBalancer":{"ingress":[{"ip":"203.0.113.1"}]}}}`),
		metav1.PatchOptions{}, "status")
	if err != nil {
		t.Fatal(err)
	}
	if s.Annotations["patchedstatus"] != "true" || len(s.Status.LoadBalancer.Ingress) != 1 {
		t.Fatalf("after status patch: annotations %v status %+v", s.Annotations, s.Status)
	}
	s.Status.Conditions = append(s.Status.Conditions, metav1.Condition{Type: "StatusUpdate", Status: metav1.ConditionTrue,
		Reason: "E2E", Message: "Set from e2e test", LastTransitionTime: metav1.Now()})
	s.Spec.Type = corev1.ServiceTypeClusterIP // ignored by /status
	s, err = svcs.UpdateStatus(e.Ctx, s, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Status.Conditions) != 1 || s.Annotations["patchedstatus"] != "true" || s.Spec.Type != corev1.ServiceTypeLoadBalancer {
		t.Fatalf("after status update: %+v %v %s", s.Status.Conditions, s.Annotations, s.Spec.Type)
	}
}
