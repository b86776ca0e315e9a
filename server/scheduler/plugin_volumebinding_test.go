package scheduler

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/server/controller/volume"
)

func withClaim(volName, claim string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: volName, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}})
	}
}

func TestVolumeBinding(t *testing.T) {
	wffc, immediate := storagev1.VolumeBindingWaitForFirstConsumer, storagev1.VolumeBindingImmediate
	classes := []*storagev1.StorageClass{
		{ObjectMeta: metav1.ObjectMeta{Name: "local-path"}, Provisioner: volume.LocalPathProvisioner, VolumeBindingMode: &wffc},
		{ObjectMeta: metav1.ObjectMeta{Name: "static-local"}, Provisioner: "kubernetes.io/no-provisioner", VolumeBindingMode: &wffc},
		{ObjectMeta: metav1.ObjectMeta{Name: "nfs"}, Provisioner: "example.com/nfs", VolumeBindingMode: &immediate},
	}
	claim := func(name, class, volumeName string) *corev1.PersistentVolumeClaim {
		return &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: &class, VolumeName: volumeName,
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}
	}
	localPV := func(name, class, nodeName string) *corev1.PersistentVolume {
		return &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PersistentVolumeSpec{
			StorageClassName: class, AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{nodeName}}}}}}}},
			Status: corev1.PersistentVolumeStatus{Phase: corev1.VolumeAvailable}}
	}
	claims := []*corev1.PersistentVolumeClaim{
		claim("bound", "static-local", "pv-a"),
		claim("wffc", "local-path", ""),
		claim("wffc-static", "static-local", ""),
		claim("immediate", "nfs", ""),
	}
	pvA := localPV("pv-a", "static-local", "a")
	pvA.Spec.ClaimRef = &corev1.ObjectReference{Namespace: "default", Name: "bound", UID: "uid-bound"}
	pvA.Status.Phase = corev1.VolumeBound
	pvs := []*corev1.PersistentVolume{pvA, localPV("pv-free-b", "static-local", "b")}
	pvcIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	pvIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	scIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, c := range claims {
		_ = pvcIdx.Add(c)
	}
	for _, pv := range pvs {
		_ = pvIdx.Add(pv)
	}
	for _, sc := range classes {
		_ = scIdx.Add(sc)
	}
	vb := VolumeBinding{claims: corelisters.NewPersistentVolumeClaimLister(pvcIdx), volumes: corelisters.NewPersistentVolumeLister(pvIdx),
		classes: storagelisters.NewStorageClassLister(scIdx)}
	withDir := func(n *corev1.Node) {
		n.Annotations = map[string]string{volume.AnnLocalPathDir: "/var/lib/skiff/storage"}
	}
	snap := NewSnapshot(nodeInfo(node("a", withDir)), nodeInfo(node("b", withDir)), nodeInfo(node("no-agent-dir")))

	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want map[string]string
	}{
		{"no claims", pod("p"), map[string]string{"a": "ok", "b": "ok", "no-agent-dir": "ok"}},
		{"bound local volume pins the pod", pod("p", withClaim("d", "bound")),
			map[string]string{"a": "ok", "b": "UU:" + ErrReasonNodeConflict, "no-agent-dir": "UU:" + ErrReasonNodeConflict}},
		{"local-path claim: nodes that can provision", pod("p", withClaim("d", "wffc")),
			map[string]string{"a": "ok", "b": "ok", "no-agent-dir": "UU:" + ErrReasonCannotProvision}},
		{"static WaitForFirstConsumer claim: nodes with a matching volume", pod("p", withClaim("d", "wffc-static")),
			map[string]string{"a": "UU:" + ErrReasonBindConflict, "b": "ok", "no-agent-dir": "UU:" + ErrReasonBindConflict}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectEqual(t, "verdicts", verdicts(runFilter(t, vb, tc.pod, snap)), tc.want)
		})
	}

	// PreFilter refuses pods whose claims cannot be bound by scheduling.
	for claimName, want := range map[string]string{
		"immediate": ErrReasonUnboundImmediate,
		"missing":   `persistentvolumeclaim "missing" not found`,
	} {
		st := vb.PreFilter(context.Background(), NewCycleState(), info(pod("p", withClaim("d", claimName))), snap)
		if st.Code() != UnschedulableAndUnresolvable || joinReasons(st) != want {
			t.Errorf("claim %s: PreFilter = %v, want %q", claimName, st, want)
		}
	}
}
