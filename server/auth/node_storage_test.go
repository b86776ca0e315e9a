package auth

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type fakeNodeVolumes struct {
	fakeNodeObjects
	volumes map[string]string // local-path volume name → node
}

func (f fakeNodeVolumes) LocalPathVolumeNode(name string) (string, bool) {
	n, ok := f.volumes[name]
	return n, ok
}

func TestNodeStorageRules(t *testing.T) {
	mine := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "db-0"}, Spec: corev1.PodSpec{NodeName: "n1",
		Volumes: []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data-db-0"}}}}}}
	objs := fakeNodeVolumes{fakeNodeObjects{pods: []*corev1.Pod{mine}}, map[string]string{"pvc-1": "n1", "pvc-2": "n2"}}
	authz := NewAuthorizer().WithNodeObjects(objs)
	n1 := &User{Name: "system:node:n1", Groups: []string{"system:nodes", "system:authenticated"}}
	res := func(verb, resource, sub, ns, name string) Attributes {
		return Attributes{Verb: verb, Resource: resource, Subresource: sub, Namespace: ns, Name: name}
	}
	for _, tt := range []struct {
		name  string
		attrs Attributes
		allow bool
	}{
		{"get own pod's claim", res("get", "persistentvolumeclaims", "", "app", "data-db-0"), true},
		{"get another claim", res("get", "persistentvolumeclaims", "", "app", "data-db-1"), false},
		{"same claim name, other namespace", res("get", "persistentvolumeclaims", "", "other", "data-db-0"), false},
		{"list claims", res("list", "persistentvolumeclaims", "", "", ""), false},
		{"update claim status", res("update", "persistentvolumeclaims", "status", "app", "data-db-0"), false},
		{"get volume", res("get", "persistentvolumes", "", "", "pvc-2"), true},
		{"watch volumes", res("watch", "persistentvolumes", "", "", ""), true},
		{"delete own local-path volume", res("delete", "persistentvolumes", "", "", "pvc-1"), true},
		{"delete another node's volume", res("delete", "persistentvolumes", "", "", "pvc-2"), false},
		{"delete a volume not made by local-path", res("delete", "persistentvolumes", "", "", "static"), false},
		{"create volume", res("create", "persistentvolumes", "", "", ""), false},
		{"update volume", res("update", "persistentvolumes", "", "", "pvc-1"), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if ok, reason := authz.Authorize(n1, tt.attrs); ok != tt.allow {
				t.Fatalf("Authorize = %v (%q), want %v", ok, reason, tt.allow)
			}
		})
	}
}
