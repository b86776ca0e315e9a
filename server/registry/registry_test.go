package registry

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-io/skiff/fsm/state"
)

func mustKind(t *testing.T, r *Registry, group, resource string) *Kind {
	t.Helper()
	version := "v1"
	k, ok := r.Lookup(group, version, resource)
	if !ok {
		t.Fatalf("%s/%s not registered", group, resource)
	}
	return k
}

func TestLookupAndStorageResource(t *testing.T) {
	r := New()
	want := map[string]string{
		"/configmaps": "configmaps", "apps/deployments": "apps/deployments",
		"coordination.k8s.io/leases": "coordination.k8s.io/leases", "/namespaces": "namespaces",
	}
	for in, storage := range want {
		var group, res string
		for i := range in {
			if in[i] == '/' {
				group, res = in[:i], in[i+1:]
			}
		}
		k := mustKind(t, r, group, res)
		if k.StorageResource() != storage {
			t.Errorf("%s: storage %q, want %q", in, k.StorageResource(), storage)
		}
		if got, ok := r.ByStorageResource(storage); !ok || got != k {
			t.Errorf("ByStorageResource(%q)", storage)
		}
	}
	if k := mustKind(t, r, "", "namespaces"); k.Namespaced || k.Key("x", "n") != (state.Key{Resource: "namespaces", Name: "n"}) {
		t.Fatal("namespaces must be cluster-scoped")
	}
	if len(r.Kinds()) != 64 {
		t.Fatalf("kinds: %d", len(r.Kinds()))
	}
	gvs := r.GroupVersions()
	if gvs[0].Group != "" || gvs[1].Group != "admissionregistration.k8s.io" || gvs[2].Group != "apiextensions.k8s.io" || gvs[3].Group != "apiregistration.k8s.io" || gvs[4].Group != "apps" || gvs[5].Group != "authentication.k8s.io" || gvs[6].Group != "authorization.k8s.io" || gvs[7] != (schema.GroupVersion{Group: "autoscaling", Version: "v2"}) || gvs[8] != (schema.GroupVersion{Group: "autoscaling", Version: "v1"}) || gvs[9].Group != "batch" {
		t.Fatalf("group versions order: %v", gvs)
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	k := mustKind(t, New(), "", "configmaps")
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "ns", ResourceVersion: "9", UID: "u"}, Data: map[string]string{"k": "v"}}
	data, err := k.Encode(cm)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"a","namespace":"ns","uid":"u"},"data":{"k":"v"}}` {
		t.Fatalf("stored form: %s", data)
	}
	if cm.ResourceVersion != "9" {
		t.Fatal("Encode changed the object")
	}
	obj, err := k.Decode(state.NewObject(k.Key("ns", "a"), "u", data, 3, 42))
	if err != nil {
		t.Fatal(err)
	}
	if got := obj.(*corev1.ConfigMap); got.ResourceVersion != "42" || got.Data["k"] != "v" || got.Kind != "ConfigMap" {
		t.Fatalf("decoded: %+v", got)
	}
}

func TestServiceDefaultsAndValidation(t *testing.T) {
	k := mustKind(t, New(), "", "services")
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	k.PrepareForCreate(svc)
	if svc.Spec.Type != corev1.ServiceTypeClusterIP || svc.Spec.SessionAffinity != corev1.ServiceAffinityNone ||
		svc.Spec.Ports[0].Protocol != corev1.ProtocolTCP || svc.Spec.Ports[0].TargetPort != intstr.FromInt32(80) {
		t.Fatalf("defaults: %+v", svc.Spec)
	}
	if errs := k.Validate(svc); len(errs) != 0 {
		t.Fatalf("valid service: %v", errs)
	}
	bad := svc.DeepCopy()
	bad.Name = "1web" // DNS-1035: must start with a letter
	bad.Spec.Ports = append(bad.Spec.Ports, corev1.ServicePort{Port: 70000, Protocol: "TCP", TargetPort: intstr.FromInt32(1)})
	assertFields(t, k.Validate(bad), "metadata.name", "spec.ports[0].name", "spec.ports[1].name", "spec.ports[1].port")

	svc.Spec.ClusterIP = "10.0.0.10"
	cells := k.Cells(svc, time.Now())
	if cells[1] != "ClusterIP" || cells[2] != "10.0.0.10" || cells[3] != "<none>" || cells[4] != "80/TCP" {
		t.Fatalf("cells: %v", cells)
	}
}

func TestDataKeysAndSecrets(t *testing.T) {
	r := New()
	cmKind := mustKind(t, r, "", "configmaps")
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "d"},
		Data: map[string]string{"bad key": "v", "ok": "v"}, BinaryData: map[string][]byte{"ok": nil}}
	assertFields(t, cmKind.Validate(cm), "data[bad key]", "data[ok]")

	sKind := mustKind(t, r, "", "secrets")
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "d"}, Type: corev1.SecretTypeTLS,
		StringData: map[string]string{"tls.crt": "x"}}
	sKind.PrepareForCreate(s)
	if string(s.Data["tls.crt"]) != "x" || s.StringData != nil {
		t.Fatalf("stringData merge: %+v", s)
	}
	assertFields(t, sKind.Validate(s), "data[tls.key]")
	if f := sKind.Fields(s); f["type"] != string(corev1.SecretTypeTLS) || f["metadata.namespace"] != "d" {
		t.Fatalf("fields: %v", f)
	}
	if !sKind.SupportsField("type") || sKind.SupportsField("spec.nodeName") {
		t.Fatal("secret selectable fields")
	}
}

func TestUpdateRules(t *testing.T) {
	k := mustKind(t, New(), "", "pods")
	old := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "d", Generation: 1, UID: "u", ResourceVersion: "5",
		CreationTimestamp: metav1.Now()},
		Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "a:1"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	k.PrepareForCreate(old)
	old.Status.Phase = corev1.PodRunning
	old.Generation = 1

	upd := old.DeepCopy()
	upd.Status.Phase = corev1.PodFailed
	upd.Spec.Containers[0].Image = "a:2"
	upd.CreationTimestamp = metav1.Time{}
	k.PrepareForUpdate(upd, old)
	if upd.Status.Phase != corev1.PodRunning || upd.Generation != 2 || upd.CreationTimestamp != old.CreationTimestamp {
		t.Fatalf("main update: gen %d status %s", upd.Generation, upd.Status.Phase)
	}
	st := old.DeepCopy()
	st.Status.Phase = corev1.PodSucceeded
	st.Spec.Containers[0].Image = "ignored"
	out := k.PrepareForStatusUpdate(st, old).(*corev1.Pod)
	if out.Status.Phase != corev1.PodSucceeded || out.Spec.Containers[0].Image != "a:1" {
		t.Fatalf("status update: %+v", out)
	}

	grace, graceful := k.GracefulDelete(old, &metav1.DeleteOptions{})
	if graceful || grace != 0 {
		t.Fatal("an unscheduled pod deletes at once")
	}
	old.Spec.NodeName = "n1"
	if grace, graceful = k.GracefulDelete(old, &metav1.DeleteOptions{}); !graceful || grace != 30 {
		t.Fatalf("bound pod grace %d", grace)
	}
}

func TestTables(t *testing.T) {
	r := New()
	now := time.Now()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", CreationTimestamp: metav1.NewTime(now.Add(-2 * time.Hour)),
		Labels: map[string]string{"node-role.kubernetes.io/control-plane": ""}},
		Spec: corev1.NodeSpec{Unschedulable: true},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.33.0-skiff"}}}
	cells := mustKind(t, r, "", "nodes").Cells(node, now)
	if cells[1] != "Ready,SchedulingDisabled" || cells[2] != "control-plane" || cells[3] != "120m" || cells[4] != "v1.33.0-skiff" {
		t.Fatalf("node cells: %v", cells)
	}
	for _, k := range r.Kinds() {
		cols := k.Columns()
		obj := k.New()
		if got := len(k.Cells(obj, now)); got != len(cols) {
			t.Errorf("%s: %d cells for %d columns", k.Resource, got, len(cols))
		}
		hasName := false
		for _, c := range cols {
			hasName = hasName || c.Name == "Name"
		}
		if !hasName {
			t.Errorf("%s: no Name column", k.Resource)
		}
	}
	var _ runtime.Object = node
}

func assertFields(t *testing.T, errs field.ErrorList, want ...string) {
	t.Helper()
	got := map[string]bool{}
	for _, e := range errs {
		got[e.Field] = true
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("missing error for %s in %v", w, errs)
		}
	}
}

// A NodePort Service turned ExternalName by a client that sends back the
// rest of the object loses its cluster IPs, families and node ports, and
// is valid (kube-apiserver's strategy; conformance "should be able to
// change the type from NodePort to ExternalName").
func TestServiceTypeChangeToExternalName(t *testing.T) {
	k := mustKind(t, New(), "", "services")
	single := corev1.IPFamilyPolicySingleStack
	old := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "u", ResourceVersion: "3"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ClusterIP: "10.43.0.20", ClusterIPs: []string{"10.43.0.20"},
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol}, IPFamilyPolicy: &single,
			Ports: []corev1.ServicePort{{Port: 80, NodePort: 30080}}}}
	k.PrepareForCreate(old)
	upd := old.DeepCopy()
	upd.Spec.Type = corev1.ServiceTypeExternalName
	upd.Spec.ExternalName = "foo.example.com"
	k.PrepareForUpdate(upd, old)
	if errs := k.ValidateUpdate(upd, old); len(errs) != 0 {
		t.Fatalf("NodePort -> ExternalName refused: %v", errs)
	}
	s := upd.Spec
	if s.ClusterIP != "" || s.ClusterIPs != nil || s.IPFamilies != nil || s.IPFamilyPolicy != nil ||
		s.Ports[0].NodePort != 0 || s.ExternalTrafficPolicy != "" {
		t.Fatalf("type-dependent fields kept: %+v", s)
	}

	// A client that asks for an ExternalName Service with a cluster IP is refused.
	bad := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "ext", Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "a.example.com", ClusterIP: "10.43.0.9"}}
	k.PrepareForCreate(bad)
	assertFields(t, k.Validate(bad), "spec.clusterIPs")
}

// A /status PATCH may change the annotations (conformance "should
// complete a service status lifecycle" waits for one), not the spec.
func TestStatusUpdateKeepsMetadataChanges(t *testing.T) {
	k := mustKind(t, New(), "", "services")
	old := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "u", ResourceVersion: "3"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}}}
	st := old.DeepCopy()
	st.Annotations = map[string]string{"patchedstatus": "true"}
	st.Spec.Type = corev1.ServiceTypeClusterIP
	st.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.1"}}
	out := k.PrepareForStatusUpdate(st, old).(*corev1.Service)
	if out.Annotations["patchedstatus"] != "true" || out.Spec.Type != corev1.ServiceTypeLoadBalancer ||
		len(out.Status.LoadBalancer.Ingress) != 1 {
		t.Fatalf("status update: annotations %v type %s status %+v", out.Annotations, out.Spec.Type, out.Status)
	}
}
