package volume

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMatchDecisions(t *testing.T) {
	mk := func(name, class, size string, modes ...corev1.PersistentVolumeAccessMode) *corev1.PersistentVolume {
		return &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"tier": name}},
			Spec: corev1.PersistentVolumeSpec{StorageClassName: class, AccessModes: modes,
				Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
			Status: corev1.PersistentVolumeStatus{Phase: corev1.VolumeAvailable}}
	}
	claim := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "ns", UID: "u1"},
		Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: new(string), AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}
	rwx, rwo := corev1.ReadWriteMany, corev1.ReadWriteOnce
	pvs := []*corev1.PersistentVolume{
		mk("rwo-only", "", "1Gi", rwo),
		mk("too-small", "", "500Mi", rwx),
		mk("gold", "gold", "1Gi", rwx),
		mk("large", "", "5Gi", rwo, rwx),
		mk("fits", "", "2Gi", rwx),
	}
	if got := FindVolume(pvs, claim, nil); got == nil || got.Name != "fits" {
		t.Fatalf("FindVolume = %v, want fits", got)
	}
	// A selector narrows the choice.
	claim.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "large"}}
	if got := FindVolume(pvs, claim, nil); got == nil || got.Name != "large" {
		t.Fatalf("with selector: %v", got)
	}
	claim.Spec.Selector = nil
	// A volume pre-bound to the claim wins over a smaller fit; one bound
	// to another claim is never chosen.
	pre := mk("pre", "", "50Gi", rwx)
	pre.Spec.ClaimRef = &corev1.ObjectReference{Namespace: "ns", Name: "c"}
	taken := mk("taken", "", "1Gi", rwx)
	taken.Spec.ClaimRef = &corev1.ObjectReference{Namespace: "ns", Name: "other", UID: "u2"}
	if got := FindVolume(append([]*corev1.PersistentVolume{taken}, append(pvs, pre)...), claim, nil); got == nil || got.Name != "pre" {
		t.Fatalf("pre-bound: %v", got)
	}
	// Node affinity: a local volume of another node does not match.
	local := mk("local", "", "1Gi", rwx)
	local.Spec.NodeAffinity = &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
		MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{"n1"}}}}}}}
	n1 := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{corev1.LabelHostname: "n1"}}}
	n2 := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2", Labels: map[string]string{corev1.LabelHostname: "n2"}}}
	if !Matches(local, claim, n1) || Matches(local, claim, n2) {
		t.Fatal("node affinity not applied")
	}

	// Reclaim decisions.
	for _, tc := range []struct {
		policy corev1.PersistentVolumeReclaimPolicy
		by     string
		want   ReclaimAction
	}{
		{corev1.PersistentVolumeReclaimRetain, LocalPathProvisioner, ReclaimKeep},
		{corev1.PersistentVolumeReclaimDelete, LocalPathProvisioner, ReclaimByAgent},
		{corev1.PersistentVolumeReclaimDelete, "", ReclaimUnsupported},
		{corev1.PersistentVolumeReclaimRecycle, LocalPathProvisioner, ReclaimUnsupported},
	} {
		pv := mk("x", "", "1Gi", rwo)
		pv.Spec.PersistentVolumeReclaimPolicy = tc.policy
		pv.Annotations = map[string]string{AnnProvisionedBy: tc.by}
		if got := Reclaim(pv); got != tc.want {
			t.Errorf("Reclaim(%s, %q) = %d, want %d", tc.policy, tc.by, got, tc.want)
		}
	}
}
