package localpath

import (
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestRemoveDir(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "storage", "pvc-1")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ dir, name string }{
		{filepath.Join(root, "storage"), "pvc-1"}, // not the volume's own directory
		{"relative/pvc-1", "pvc-1"},
		{root + "/storage/x/../pvc-1", "pvc-1"}, // not clean
		{"/pvc-1", "pvc-1"},
	} {
		if err := RemoveDir(bad.dir, bad.name); err == nil {
			t.Errorf("RemoveDir(%q, %q) accepted", bad.dir, bad.name)
		}
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("refused removals removed something: %v", err)
	}
	if err := RemoveDir(dir, "pvc-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("still there: %v", err)
	}
	if err := RemoveDir(dir, "pvc-1"); err != nil {
		t.Fatalf("a second removal: %v", err)
	}
}

func TestOwnsAndShouldDelete(t *testing.T) {
	r := &Reclaimer{Node: "n1"}
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pvc-1",
		Annotations: map[string]string{AnnProvisionedBy: Provisioner, AnnSelectedNode: "n1"}},
		Spec: corev1.PersistentVolumeSpec{PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/d/pvc-1"}}},
		Status: corev1.PersistentVolumeStatus{Phase: corev1.VolumeBound}}
	if !r.owns(pv) || ShouldDelete(pv) {
		t.Fatal("a bound volume of this node: owned, kept")
	}
	pv.Status.Phase = corev1.VolumeReleased
	if !ShouldDelete(pv) {
		t.Fatal("a released Delete volume is deleted")
	}
	pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimRetain
	if ShouldDelete(pv) {
		t.Fatal("a released Retain volume is kept")
	}
	other := pv.DeepCopy()
	other.Annotations[AnnSelectedNode] = "n2"
	if r.owns(other) {
		t.Fatal("another node's volume")
	}
	static := pv.DeepCopy()
	delete(static.Annotations, AnnProvisionedBy)
	if r.owns(static) {
		t.Fatal("a volume local-path did not make")
	}
}
