package apiserver_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

func claim(name, size string, modes ...corev1.PersistentVolumeAccessMode) *corev1.PersistentVolumeClaim {
	c := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: modes}}
	if size != "" {
		c.Spec.Resources.Requests = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}
	}
	return c
}

// TestStorageValidation: PersistentVolumeClaims, PersistentVolumes and
// StorageClasses are served (today they are not: kubectl apply fails on
// the whole file) and validated as Kubernetes does, with 422 and field
// causes.
func TestStorageValidation(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	pvcs := e.cs.CoreV1().PersistentVolumeClaims("default")

	_, err := pvcs.Create(e.ctx, claim("bad", ""), metav1.CreateOptions{})
	if f := causeFields(t, err); !f["spec.accessModes"] || !f["spec.resources[storage]"] {
		t.Fatalf("claim causes: %v", f)
	}
	_, err = pvcs.Create(e.ctx, claim("bad", "1Gi", "ReadWriteSometimes"), metav1.CreateOptions{})
	if f := causeFields(t, err); !f["spec.accessModes"] {
		t.Fatalf("claim access mode causes: %v", f)
	}
	_, err = pvcs.Create(e.ctx, claim("zero", "0", corev1.ReadWriteOnce), metav1.CreateOptions{})
	if f := causeFields(t, err); !f["spec.resources.requests[storage]"] {
		t.Fatalf("claim zero size causes: %v", f)
	}

	good, err := pvcs.Create(e.ctx, claim("data", "1Gi", corev1.ReadWriteOnce), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if good.Status.Phase != corev1.ClaimPending || good.Spec.VolumeMode == nil || *good.Spec.VolumeMode != corev1.PersistentVolumeFilesystem {
		t.Fatalf("defaults: phase %q volumeMode %v", good.Status.Phase, good.Spec.VolumeMode)
	}
	// The class may be set once (the default class, retroactively), then
	// not changed; access modes never.
	cls := "fast"
	good.Spec.StorageClassName = &cls
	if good, err = pvcs.Update(e.ctx, good, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("set class on a claim that had none: %v", err)
	}
	other := "slow"
	good.Spec.StorageClassName = &other
	_, err = pvcs.Update(e.ctx, good, metav1.UpdateOptions{})
	if f := causeFields(t, err); !f["spec"] {
		t.Fatalf("class change causes: %v", f)
	}
	// A bound claim may grow, not shrink below its capacity.
	good.Spec.StorageClassName = &cls
	good.Status.Phase = corev1.ClaimBound
	good.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}
	if good, err = pvcs.UpdateStatus(e.ctx, good, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	good.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("2Gi")
	if good, err = pvcs.Update(e.ctx, good, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("grow a bound claim: %v", err)
	}
	good.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("512Mi")
	_, err = pvcs.Update(e.ctx, good, metav1.UpdateOptions{})
	if f := causeFields(t, err); !f["spec.resources.requests.storage"] {
		t.Fatalf("shrink causes: %v", f)
	}

	pvs := e.cs.CoreV1().PersistentVolumes()
	_, err = pvs.Create(e.ctx, &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv1"}}, metav1.CreateOptions{})
	if f := causeFields(t, err); !f["spec.accessModes"] || !f["spec.capacity"] || !f["spec"] {
		t.Fatalf("volume causes: %v", f)
	}
	local := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv1"}, Spec: corev1.PersistentVolumeSpec{
		AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
		PersistentVolumeSource: corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: "/srv/pv1"}},
	}}
	_, err = pvs.Create(e.ctx, local, metav1.CreateOptions{})
	if f := causeFields(t, err); !f["spec.nodeAffinity"] {
		t.Fatalf("local volume without node affinity causes: %v", f)
	}
	local.Spec.NodeAffinity = &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
		MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{"n1"}}}}}}}
	created, err := pvs.Create(e.ctx, local, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if created.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
		t.Fatalf("default reclaim policy %q", created.Spec.PersistentVolumeReclaimPolicy)
	}
	created.Spec.Local.Path = "/elsewhere"
	_, err = pvs.Update(e.ctx, created, metav1.UpdateOptions{})
	if f := causeFields(t, err); !f["spec.persistentvolumesource"] {
		t.Fatalf("source change causes: %v", f)
	}

	scs := e.cs.StorageV1().StorageClasses()
	_, err = scs.Create(e.ctx, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
	if f := causeFields(t, err); !f["provisioner"] {
		t.Fatalf("class causes: %v", f)
	}
	sc, err := scs.Create(e.ctx, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "fast"}, Provisioner: "skiff.io/local-path",
		Parameters: map[string]string{"nodePath": "/srv"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sc.ReclaimPolicy == nil || *sc.ReclaimPolicy != corev1.PersistentVolumeReclaimDelete ||
		sc.VolumeBindingMode == nil || *sc.VolumeBindingMode != storagev1.VolumeBindingImmediate {
		t.Fatalf("class defaults: %v %v", sc.ReclaimPolicy, sc.VolumeBindingMode)
	}
	sc.Parameters["nodePath"] = "/other"
	_, err = scs.Update(e.ctx, sc, metav1.UpdateOptions{})
	if f := causeFields(t, err); !f["parameters"] {
		t.Fatalf("class update causes: %v", f)
	}
	if !apierrors.IsInvalid(err) {
		t.Fatalf("want 422, got %v", err)
	}
}

// TestStorageAdmission: a new claim gets the default class and the
// pvc-protection finalizer; it may grow only when bound and its class
// allows expansion (403 otherwise).
func TestStorageAdmission(t *testing.T) {
	e := newEnv(t, apiservertest.Options{Admission: true})
	if _, err := e.cs.CoreV1().ServiceAccounts("default").Create(e.ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	scs := e.cs.StorageV1().StorageClasses()
	for name, expand := range map[string]bool{"std": false, "grow": true} {
		sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Provisioner: "skiff.io/local-path", AllowVolumeExpansion: &expand}
		if name == "std" {
			sc.Annotations = map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}
		}
		if _, err := scs.Create(e.ctx, sc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pvcs := e.cs.CoreV1().PersistentVolumeClaims("default")
	c, err := pvcs.Create(e.ctx, claim("plain", "1Gi", corev1.ReadWriteOnce), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Spec.StorageClassName == nil || *c.Spec.StorageClassName != "std" || len(c.Finalizers) != 1 || c.Finalizers[0] != "kubernetes.io/pvc-protection" {
		t.Fatalf("class %v finalizers %v", c.Spec.StorageClassName, c.Finalizers)
	}
	grow := func(c *corev1.PersistentVolumeClaim) error {
		c.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("2Gi")
		_, err := pvcs.Update(e.ctx, c, metav1.UpdateOptions{})
		return err
	}
	bind := func(c *corev1.PersistentVolumeClaim) *corev1.PersistentVolumeClaim {
		c.Spec.VolumeName = "pv-" + c.Name
		c, err := pvcs.Update(e.ctx, c, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c.Status.Phase = corev1.ClaimBound
		c.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}
		if c, err = pvcs.UpdateStatus(e.ctx, c, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		return c
	}
	if err := grow(c.DeepCopy()); !apierrors.IsInvalid(err) {
		t.Fatalf("grow an unbound claim (its spec is immutable): %v", err)
	}
	c = bind(c)
	if err := grow(c.DeepCopy()); !apierrors.IsForbidden(err) {
		t.Fatalf("grow a claim whose class does not allow expansion: %v", err)
	}
	g := claim("growing", "1Gi", corev1.ReadWriteOnce)
	g.Spec.StorageClassName = ptrTo("grow")
	if g, err = pvcs.Create(e.ctx, g, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := grow(bind(g)); err != nil {
		t.Fatalf("grow a bound claim of an expandable class: %v", err)
	}
}

func ptrTo[T any](v T) *T { return &v }
