package admission

import (
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-io/skiff/server/auth"
	"github.com/skiff-io/skiff/server/registry"
)

func TestNodeRestriction(t *testing.T) {
	reg := registry.New()
	nodes, ok1 := reg.Lookup("", "v1", "nodes")
	leases, ok2 := reg.Lookup("coordination.k8s.io", "v1", "leases")
	pods, ok3 := reg.Lookup("", "v1", "pods")
	if !ok1 || !ok2 || !ok3 {
		t.Fatal("registry lacks nodes, leases or pods")
	}
	n1 := &auth.User{Name: "system:node:n1", Groups: []string{auth.GroupNodes, auth.GroupAuthenticated}}
	admin := &auth.User{Name: "admin", Groups: []string{auth.GroupMasters}}
	node := func(name string, labels map[string]string, taints ...corev1.Taint) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Spec: corev1.NodeSpec{Taints: taints}}
	}
	lease := func(ns, name string) *coordinationv1.Lease {
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	}
	pod := func(node string, mirror bool, owner string, vols ...corev1.Volume) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-" + node, Annotations: map[string]string{}},
			Spec: corev1.PodSpec{NodeName: node, Volumes: vols, Containers: []corev1.Container{{Name: "c", Image: "i"}}}}
		if mirror {
			p.Annotations["kubernetes.io/config.mirror"] = "h"
		}
		if owner != "" {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: owner}}
		}
		return p
	}
	secretVol := corev1.Volume{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "x"}}}
	noSched := corev1.Taint{Key: "k", Effect: corev1.TaintEffectNoSchedule}
	restricted := map[string]string{"node-restriction.kubernetes.io/zone": "a"}
	for _, tc := range []struct {
		name      string
		user      *auth.User
		kind      *registry.Kind
		op        Operation
		obj, old  runtime.Object
		forbidden bool
	}{
		{"own node", n1, nodes, Create, node("n1", nil, noSched), nil, false},
		{"another node", n1, nodes, Create, node("n2", nil), nil, true},
		{"admin creates any node", admin, nodes, Create, node("n2", restricted), nil, false},
		{"own lease", n1, leases, Create, lease("kube-node-lease", "n1"), nil, false},
		{"another node's lease", n1, leases, Create, lease("kube-node-lease", "n2"), nil, true},
		{"lease elsewhere", n1, leases, Create, lease("default", "n1"), nil, true},
		{"restricted label on create", n1, nodes, Create, node("n1", restricted), nil, true},
		{"restricted label kept", n1, nodes, Update, node("n1", restricted), node("n1", restricted), false},
		{"restricted label changed", n1, nodes, Update, node("n1", map[string]string{"node-restriction.kubernetes.io/zone": "b"}), node("n1", restricted), true},
		{"restricted label removed", n1, nodes, Update, node("n1", nil), node("n1", restricted), true},
		{"ordinary label", n1, nodes, Update, node("n1", map[string]string{"x": "y"}), node("n1", nil), false},
		{"taint removed by the node", n1, nodes, Update, node("n1", nil), node("n1", nil, noSched), true},
		{"taints unchanged", n1, nodes, Update, node("n1", nil, noSched), node("n1", nil, noSched), false},
		{"admin changes taints", admin, nodes, Update, node("n1", nil), node("n1", nil, noSched), false},
		{"own mirror pod", n1, pods, Create, pod("n1", true, "n1"), nil, false},
		{"pod that is no mirror", n1, pods, Create, pod("n1", false, "n1"), nil, true},
		{"mirror pod of another node", n1, pods, Create, pod("n2", true, ""), nil, true},
		{"mirror pod owned by another node", n1, pods, Create, pod("n1", true, "n2"), nil, true},
		{"mirror pod with a secret", n1, pods, Create, pod("n1", true, "n1", secretVol), nil, true},
		{"admin creates a pod", admin, pods, Create, pod("n2", false, ""), nil, false},
	} {
		a := &Attributes{Operation: tc.op, Kind: tc.kind, Object: tc.obj, OldObject: tc.old}
		err := nodeRestriction(tc.user, a)
		if tc.forbidden != apierrors.IsForbidden(err) || (!tc.forbidden && err != nil) {
			t.Errorf("%s: err %v, want forbidden %v", tc.name, err, tc.forbidden)
		}
	}
}

// A kubelet deletes, and updates the status of, only pods bound to it
// (the node authorizer lets a request for a pod that is gone through to
// its 404).
func TestNodeRestrictionPodWrites(t *testing.T) {
	pods, ok := registry.New().Lookup("", "v1", "pods")
	if !ok {
		t.Fatal("registry lacks pods")
	}
	n1 := &auth.User{Name: "system:node:n1", Groups: []string{auth.GroupNodes, auth.GroupAuthenticated}}
	admin := &auth.User{Name: "admin", Groups: []string{auth.GroupMasters}}
	on := func(node string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "p"}, Spec: corev1.PodSpec{NodeName: node}}
	}
	for _, tc := range []struct {
		name      string
		user      *auth.User
		op        Operation
		sub       string
		old       *corev1.Pod
		forbidden bool
	}{
		{"delete own pod", n1, Delete, "", on("n1"), false},
		{"delete another node's pod", n1, Delete, "", on("n2"), true},
		{"status of own pod", n1, Update, "status", on("n1"), false},
		{"status of another node's pod", n1, Update, "status", on("n2"), true},
		{"admin deletes any pod", admin, Delete, "", on("n2"), false},
	} {
		a := &Attributes{Operation: tc.op, Kind: pods, Subresource: tc.sub, Name: "p", Namespace: "default", OldObject: tc.old}
		if tc.op == Update {
			a.Object = tc.old
		}
		err := nodeRestrictionPodWrite(tc.user, a)
		if tc.forbidden != apierrors.IsForbidden(err) || (!tc.forbidden && err != nil) {
			t.Errorf("%s: err %v, want forbidden %v", tc.name, err, tc.forbidden)
		}
	}
}
