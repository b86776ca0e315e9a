package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPersistentVolumeClaimVolume: a pod's claim is mounted from its
// bound hostPath volume (made when DirectoryOrCreate), with readOnly,
// subPath and fsGroup; an unbound claim keeps the pod waiting.
func TestPersistentVolumeClaimVolume(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "storage", "pvc-1")
	dirOrCreate := corev1.HostPathDirectoryOrCreate
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pvc-1"}, Spec: corev1.PersistentVolumeSpec{
		AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
		PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &dirOrCreate}}}}
	claim := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data"}, Spec: corev1.PersistentVolumeClaimSpec{
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}
	claim, err := h.cs.CoreV1().PersistentVolumeClaims("default").Create(ctx, claim, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fsGroup := int64(2345)
	p := pod("db", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: "present:1.0", VolumeMounts: []corev1.VolumeMount{
		{Name: "d", MountPath: "/data"},
		{Name: "ro", MountPath: "/ro", SubPath: "sub"},
	}})
	p.Spec.SecurityContext = &corev1.PodSecurityContext{FSGroup: &fsGroup}
	p.Spec.Volumes = []corev1.Volume{
		{Name: "d", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}},
		{Name: "ro", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data", ReadOnly: true}}},
	}
	h.createPod(p)
	h.waitPod("db", "waiting for its claim", func(p *corev1.Pod) error {
		for _, e := range h.events("db") {
			if e.Reason == "FailedMount" {
				return nil
			}
		}
		return fmt.Errorf("no FailedMount event")
	})

	// Bind them as the PV controller does.
	pv.Spec.ClaimRef = &corev1.ObjectReference{Namespace: "default", Name: "data", UID: claim.UID}
	if _, err := h.cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	claim.Spec.VolumeName = "pvc-1"
	if claim, err = h.cs.CoreV1().PersistentVolumeClaims("default").Update(ctx, claim, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	claim.Status.Phase = corev1.ClaimBound
	if _, err = h.cs.CoreV1().PersistentVolumeClaims("default").UpdateStatus(ctx, claim, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitPod("db", "running", phaseIs(corev1.PodRunning))
	got := map[string]bool{}
	for _, m := range h.containerOf("c").Config.Mounts {
		switch m.ContainerPath {
		case "/data":
			got["data"] = m.HostPath == dir && !m.Readonly
		case "/ro":
			got["ro"] = m.HostPath == filepath.Join(dir, "sub") && m.Readonly
		}
	}
	if !got["data"] || !got["ro"] {
		t.Fatalf("mounts %+v", h.containerOf("c").Config.Mounts)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if sys := st.Sys().(*syscall.Stat_t); int64(sys.Gid) != fsGroup || st.Mode()&os.ModeSetgid == 0 || st.Mode().Perm()&0o070 != 0o070 {
		t.Fatalf("volume dir gid %d mode %v, want group %d rwx and setgid", sys.Gid, st.Mode(), fsGroup)
	}
}
