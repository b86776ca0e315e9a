package apiserver_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

// TestIPAddressAPI: the operations of the conformance test "ServiceCIDR
// and IPAddress API should support IPAddress API operations"
// (network/service_cidrs.go) over protobuf; kube-apiserver's validation
// (canonical address names, parentRef required and immutable); the
// IPAddress a Service's cluster IP is reserved with is listed, and an
// address a client reserved is not given to a Service.
func TestIPAddressAPI(t *testing.T) {
	e := newEnv(t, apiservertest.Options{Admission: true}) // admission allocates cluster IPs
	cs, ct := protoClientset(t, e.srv)
	ips := cs.NetworkingV1().IPAddresses()
	wantDiscovered(t, e, networkingv1.SchemeGroupVersion, "ipaddresses", "servicecidrs", "servicecidrs/status")

	parent := &networkingv1.ParentReference{Group: "mygroup", Resource: "myresources", Namespace: "foo", Name: "bar"}
	for name, label := range map[string]string{"255.255.255.255": "broadcast", "fe80::42:1dff:fe84:f9e2": "link-local"} {
		if _, err := ips.Create(e.ctx, &networkingv1.IPAddress{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"type": label}},
			Spec: networkingv1.IPAddressSpec{ParentRef: parent}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
	}
	p, err := ips.Patch(e.ctx, "255.255.255.255", types.MergePatchType, []byte(`{"metadata":{"annotations":{"patched":"true"}}}`), metav1.PatchOptions{})
	if err != nil || p.Annotations["patched"] != "true" {
		t.Fatalf("patch: %v", err)
	}
	p.Annotations["updated"] = "true"
	if u, err := ips.Update(e.ctx, p, metav1.UpdateOptions{}); err != nil || u.Annotations["updated"] != "true" {
		t.Fatalf("update: %v", err)
	}
	p, _ = ips.Get(e.ctx, "255.255.255.255", metav1.GetOptions{})
	p.Spec.ParentRef = &networkingv1.ParentReference{Resource: "services", Name: "other"}
	if _, err := ips.Update(e.ctx, p, metav1.UpdateOptions{}); !causeFields(t, err)["spec.parentRef"] {
		t.Fatalf("parentRef change: %v", err)
	}
	if l, err := ips.List(e.ctx, metav1.ListOptions{LabelSelector: "type=broadcast"}); err != nil || len(l.Items) != 1 {
		t.Fatalf("list: %v", err)
	}
	w, err := ips.Watch(e.ctx, metav1.ListOptions{LabelSelector: "type=broadcast"})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	w.Stop()
	for _, bad := range []string{"10.0.0.010", "2001:DB8::1", "not-an-ip"} {
		_, err := ips.Create(e.ctx, &networkingv1.IPAddress{ObjectMeta: metav1.ObjectMeta{Name: bad}, Spec: networkingv1.IPAddressSpec{ParentRef: parent}}, metav1.CreateOptions{})
		if !causeFields(t, err)["metadata.name"] {
			t.Fatalf("name %q: %v", bad, err)
		}
	}
	_, err = ips.Create(e.ctx, &networkingv1.IPAddress{ObjectMeta: metav1.ObjectMeta{Name: "10.0.0.9"},
		Spec: networkingv1.IPAddressSpec{ParentRef: &networkingv1.ParentReference{Name: "a/b"}}}, metav1.CreateOptions{})
	if f := causeFields(t, err); !f["spec.parentRef.resource"] || !f["spec.parentRef.name"] {
		t.Fatalf("parentRef causes: %v", f)
	}
	if err := ips.Delete(e.ctx, "255.255.255.255", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := ips.DeleteCollection(e.ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "type=link-local"}); err != nil {
		t.Fatalf("deletecollection: %v", err)
	}
	if l, _ := ips.List(e.ctx, metav1.ListOptions{LabelSelector: "type=link-local"}); len(l.Items) != 0 {
		t.Fatalf("left: %v", l.Items)
	}
	ct.check(t)

	// A Service's cluster IP is an IPAddress; one a client holds is not
	// given out.
	svc, err := e.cs.CoreV1().Services("default").Create(e.ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ip, err := ips.Get(e.ctx, svc.Spec.ClusterIP, metav1.GetOptions{})
	if err != nil || ip.Spec.ParentRef == nil || ip.Spec.ParentRef.Resource != "services" || ip.Spec.ParentRef.Name != "web" ||
		ip.Labels["ipaddress.kubernetes.io/managed-by"] != "ipallocator.k8s.io" {
		t.Fatalf("the Service's IPAddress: %v %+v", err, ip)
	}
	rows := wantColumns(t, e, "/apis/networking.k8s.io/v1/ipaddresses", "Name", "ParentRef")
	if len(rows) != 1 || rows[0][1] != "services/default/web" {
		t.Fatalf("rows: %v", rows)
	}
	if _, err := ips.Create(e.ctx, &networkingv1.IPAddress{ObjectMeta: metav1.ObjectMeta{Name: "10.43.0.77"}, Spec: networkingv1.IPAddressSpec{ParentRef: parent}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = e.cs.CoreV1().Services("default").Create(e.ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "taken"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.43.0.77", Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("a Service took an address a client holds: %v", err)
	}
}

// TestServiceCIDRAPI: the ServiceCIDR kind with its status subresource:
// create resets the status, /status updates change only the status, CIDRs
// are validated and immutable except single- to dual-stack, as in
// kube-apiserver.
func TestServiceCIDRAPI(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	cs, ct := protoClientset(t, e.srv)
	cidrs := cs.NetworkingV1().ServiceCIDRs()
	sc, err := cidrs.Create(e.ctx, &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "extra"},
		Spec:   networkingv1.ServiceCIDRSpec{CIDRs: []string{"203.0.113.0/24"}},
		Status: networkingv1.ServiceCIDRStatus{Conditions: []metav1.Condition{{Type: "Ready", Status: "True", Reason: "x", LastTransitionTime: metav1.Now()}}}},
		metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if len(sc.Status.Conditions) != 0 {
		t.Fatalf("create kept the status: %+v", sc.Status)
	}
	dc := dynamicClient(t, e)
	st, err := dc.Resource(networkingv1.SchemeGroupVersion.WithResource("servicecidrs")).Get(e.ctx, "extra", metav1.GetOptions{}, "status")
	if err != nil || st.GetUID() != sc.UID || st.GetKind() != "ServiceCIDR" {
		t.Fatalf("get /status: %v", err)
	}
	sp, err := cidrs.Patch(e.ctx, "extra", types.MergePatchType,
		[]byte(`{"status":{"conditions":[{"type":"Ready","status":"False","reason":"e2e","message":"m","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}`), metav1.PatchOptions{}, "status")
	if err != nil || len(sp.Status.Conditions) != 1 || sp.Status.Conditions[0].Reason != "e2e" {
		t.Fatalf("patch /status: %v", err)
	}
	sp.Spec.CIDRs = []string{"203.0.113.0/24", "2001:db8::/64"}
	up, err := cidrs.Update(e.ctx, sp, metav1.UpdateOptions{})
	if err != nil || len(up.Spec.CIDRs) != 2 || len(up.Status.Conditions) != 1 {
		t.Fatalf("to dual-stack: %v", err)
	}
	up.Spec.CIDRs = []string{"198.51.100.0/24", "2001:db8::/64"}
	if _, err := cidrs.Update(e.ctx, up, metav1.UpdateOptions{}); !causeFields(t, err)["spec.cidrs[0]"] {
		t.Fatalf("cidr change: %v", err)
	}
	for _, bad := range [][]string{nil, {"10.0.0.1/8"}, {"10.0.0.0/8", "192.168.0.0/16"}, {"a", "b", "c"}} {
		_, err := cidrs.Create(e.ctx, &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{GenerateName: "bad-"}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: bad}}, metav1.CreateOptions{})
		f := causeFields(t, err)
		if !f["spec.cidrs"] && !f["spec.cidrs[0]"] {
			t.Fatalf("cidrs %v: %v", bad, f)
		}
	}
	rows := wantColumns(t, e, "/apis/networking.k8s.io/v1/servicecidrs", "Name", "CIDRs", "Age")
	if len(rows) != 1 || rows[0][1] != "203.0.113.0/24,2001:db8::/64" {
		t.Fatalf("rows: %v", rows)
	}
	if err := cidrs.DeleteCollection(e.ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	ct.check(t)
}
