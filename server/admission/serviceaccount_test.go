package admission_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/admission"
	"github.com/skiff-io/skiff/server/controller/controllertest"
)

func tokenVolume(p *corev1.Pod) *corev1.Volume {
	for i := range p.Spec.Volumes {
		if strings.HasPrefix(p.Spec.Volumes[i].Name, admission.ServiceAccountVolumePrefix) {
			return &p.Spec.Volumes[i]
		}
	}
	return nil
}

func TestServiceAccountTokenVolume(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{Admission: true})
	p := pod("p", "")
	p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "i"}}
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "own", Image: "i",
		VolumeMounts: []corev1.VolumeMount{{Name: "mine", MountPath: admission.ServiceAccountMountPath}}})
	p.Spec.Volumes = []corev1.Volume{{Name: "mine", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	got, err := e.Client.CoreV1().Pods("default").Create(e.Ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v := tokenVolume(got)
	if v == nil || v.Projected == nil || len(v.Name) != len(admission.ServiceAccountVolumePrefix)+5 {
		t.Fatalf("volumes %+v", got.Spec.Volumes)
	}
	src := v.Projected.Sources
	if len(src) != 3 || src[0].ServiceAccountToken == nil || *src[0].ServiceAccountToken.ExpirationSeconds != 3607 || src[0].ServiceAccountToken.Path != "token" ||
		src[1].ConfigMap == nil || src[1].ConfigMap.Name != "kube-root-ca.crt" || src[1].ConfigMap.Items[0].Key != "ca.crt" ||
		src[2].DownwardAPI == nil || src[2].DownwardAPI.Items[0].FieldRef.FieldPath != "metadata.namespace" || src[2].DownwardAPI.Items[0].Path != "namespace" ||
		*v.Projected.DefaultMode != 0o644 {
		t.Fatalf("projection %+v", v.Projected)
	}
	mounted := func(c corev1.Container) bool {
		for _, m := range c.VolumeMounts {
			if m.Name == v.Name && m.MountPath == admission.ServiceAccountMountPath && m.ReadOnly {
				return true
			}
		}
		return false
	}
	if !mounted(got.Spec.InitContainers[0]) || !mounted(got.Spec.Containers[0]) {
		t.Errorf("token not mounted: %+v %+v", got.Spec.InitContainers[0].VolumeMounts, got.Spec.Containers[0].VolumeMounts)
	}
	if mounted(got.Spec.Containers[1]) || len(got.Spec.Containers[1].VolumeMounts) != 1 {
		t.Errorf("a container with its own mount there got the token: %+v", got.Spec.Containers[1].VolumeMounts)
	}

	// automountServiceAccountToken: false on the pod, or on the account.
	off := false
	q := pod("q", "")
	q.Spec.AutomountServiceAccountToken = &off
	if got, err = e.Client.CoreV1().Pods("default").Create(e.Ctx, q, metav1.CreateOptions{}); err != nil || tokenVolume(got) != nil {
		t.Fatalf("pod opt-out: %v %+v", err, got.Spec.Volumes)
	}
	if _, err := e.Client.CoreV1().ServiceAccounts("default").Create(e.Ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "quiet"}, AutomountServiceAccountToken: &off}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r := pod("r", "")
	r.Spec.ServiceAccountName = "quiet"
	if got, err = e.Client.CoreV1().Pods("default").Create(e.Ctx, r, metav1.CreateOptions{}); err != nil || tokenVolume(got) != nil {
		t.Fatalf("account opt-out: %v %+v", err, got.Spec.Volumes)
	}
	// The pod's own true beats the account's false.
	on := true
	s := pod("s", "")
	s.Spec.ServiceAccountName = "quiet"
	s.Spec.AutomountServiceAccountToken = &on
	if got, err = e.Client.CoreV1().Pods("default").Create(e.Ctx, s, metav1.CreateOptions{}); err != nil || tokenVolume(got) == nil {
		t.Fatalf("pod opt-in: %v %+v", err, got.Spec.Volumes)
	}
}

func TestMissingServiceAccountRefused(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{Admission: true})
	p := pod("p", "")
	p.Spec.ServiceAccountName = "ghost"
	_, err := e.Client.CoreV1().Pods("default").Create(e.Ctx, p, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `error looking up service account default/ghost: serviceaccounts "ghost" not found`) {
		t.Fatalf("err = %v", err)
	}
}
