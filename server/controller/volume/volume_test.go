package volume_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-io/skiff/server/controller/controllertest"
	"github.com/skiff-io/skiff/server/controller/volume"
)

func ptr[T any](v T) *T { return &v }

func pvc(name, class, size string) *corev1.PersistentVolumeClaim {
	c := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}}}}
	if class != "-" {
		c.Spec.StorageClassName = ptr(class)
	}
	return c
}

func hostPV(name, class, size string, policy corev1.PersistentVolumeReclaimPolicy) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PersistentVolumeSpec{
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: class,
		Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
		PersistentVolumeReclaimPolicy: policy,
		PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/srv/" + name}},
	}}
}

func localPathClass(name string, mode storagev1.VolumeBindingMode, policy corev1.PersistentVolumeReclaimPolicy) *storagev1.StorageClass {
	return &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Provisioner: volume.LocalPathProvisioner,
		VolumeBindingMode: &mode, ReclaimPolicy: &policy, AllowVolumeExpansion: ptr(true)}
}

type env struct {
	*controllertest.Env
}

func start(t *testing.T) env {
	e := controllertest.NewEnv(t, controllertest.Options{})
	c := volume.New(e.CC)
	e.Start(func(ctx context.Context) { c.Run(ctx, 2) })
	return env{e}
}

func (e env) claim(name string) *corev1.PersistentVolumeClaim {
	c, err := e.Client.CoreV1().PersistentVolumeClaims("default").Get(e.Ctx, name, metav1.GetOptions{})
	if err != nil {
		e.T.Fatal(err)
	}
	return c
}

func (e env) waitClaim(name string, phase corev1.PersistentVolumeClaimPhase) *corev1.PersistentVolumeClaim {
	var c *corev1.PersistentVolumeClaim
	e.WaitFor(10*time.Second, "claim "+name+" "+string(phase), func() error {
		c = e.claim(name)
		if c.Status.Phase != phase {
			return controllertest.Errorf("phase %q", c.Status.Phase)
		}
		return nil
	})
	return c
}

func (e env) waitVolume(name string, phase corev1.PersistentVolumePhase) *corev1.PersistentVolume {
	var pv *corev1.PersistentVolume
	e.WaitFor(10*time.Second, "volume "+name+" "+string(phase), func() error {
		var err error
		pv, err = e.Client.CoreV1().PersistentVolumes().Get(e.Ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if pv.Status.Phase != phase {
			return controllertest.Errorf("phase %q", pv.Status.Phase)
		}
		return nil
	})
	return pv
}

func (e env) waitEvent(obj string, reason, text string) {
	e.WaitFor(10*time.Second, "event "+reason+" on "+obj, func() error {
		l, err := e.Client.CoreV1().Events("").List(e.Ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, ev := range l.Items {
			if ev.InvolvedObject.Name == obj && ev.Reason == reason && strings.Contains(ev.Message, text) {
				return nil
			}
		}
		return controllertest.Errorf("no %s event on %s", reason, obj)
	})
}

// TestStaticBindingAndRetain: a claim binds to the smallest volume that
// fits (class, size, access modes), both get their protection finalizers;
// deleting the claim releases a Retain volume, which stays.
func TestStaticBindingAndRetain(t *testing.T) {
	e := start(t)
	for _, pv := range []*corev1.PersistentVolume{
		hostPV("big", "", "10Gi", corev1.PersistentVolumeReclaimRetain),
		hostPV("small", "", "2Gi", corev1.PersistentVolumeReclaimRetain),
		hostPV("tiny", "", "512Mi", corev1.PersistentVolumeReclaimRetain),
		hostPV("other-class", "gold", "2Gi", corev1.PersistentVolumeReclaimRetain),
	} {
		if _, err := e.Client.CoreV1().PersistentVolumes().Create(e.Ctx, pv, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	e.waitVolume("tiny", corev1.VolumeAvailable)
	if _, err := e.Client.CoreV1().PersistentVolumeClaims("default").Create(e.Ctx, pvc("data", "", "1Gi"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c := e.waitClaim("data", corev1.ClaimBound)
	if c.Spec.VolumeName != "small" {
		t.Fatalf("bound to %q, want small", c.Spec.VolumeName)
	}
	if got := c.Status.Capacity[corev1.ResourceStorage]; got.String() != "2Gi" || len(c.Status.AccessModes) != 1 {
		t.Fatalf("claim status %+v", c.Status)
	}
	pv := e.waitVolume("small", corev1.VolumeBound)
	if pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.UID != c.UID {
		t.Fatalf("claimRef %+v", pv.Spec.ClaimRef)
	}
	if !contains(c.Finalizers, volume.PVCProtection) || !contains(pv.Finalizers, volume.PVProtection) {
		t.Fatalf("finalizers: claim %v volume %v", c.Finalizers, pv.Finalizers)
	}
	if err := e.Client.CoreV1().PersistentVolumeClaims("default").Delete(e.Ctx, "data", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitVolume("small", corev1.VolumeReleased)
	time.Sleep(300 * time.Millisecond)
	e.waitVolume("small", corev1.VolumeReleased) // Retain: kept
}

// TestMissingClassStaysPending: a claim naming a class that does not
// exist stays Pending with an event saying so; creating the class lets it
// proceed.
func TestMissingClassStaysPending(t *testing.T) {
	e := start(t)
	if _, err := e.Client.CoreV1().PersistentVolumeClaims("default").Create(e.Ctx, pvc("c1", "nope", "1Gi"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitEvent("c1", "ProvisioningFailed", `storageclass.storage.k8s.io "nope" not found`)
	if c := e.claim("c1"); c.Status.Phase != corev1.ClaimPending || c.Spec.VolumeName != "" {
		t.Fatalf("claim %+v", c.Status)
	}
	if _, err := e.Client.StorageV1().StorageClasses().Create(e.Ctx, localPathClass("nope", storagev1.VolumeBindingWaitForFirstConsumer, corev1.PersistentVolumeReclaimDelete), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitEvent("c1", "WaitForFirstConsumer", "waiting for first consumer")
}

// TestLocalPathWaitForFirstConsumer: the claim waits until the scheduler
// names a node, then gets a hostPath volume under the node's local-path
// directory, pinned to it; it can grow; deleting the claim releases the
// volume for the node's agent to remove. A claim with no class gets the
// default class.
func TestLocalPathWaitForFirstConsumer(t *testing.T) {
	e := start(t)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{corev1.LabelHostname: "n1"},
		Annotations: map[string]string{volume.AnnLocalPathDir: "/var/lib/skiff/storage"}}}
	if _, err := e.Client.CoreV1().Nodes().Create(e.Ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sc := localPathClass("local-path", storagev1.VolumeBindingWaitForFirstConsumer, corev1.PersistentVolumeReclaimDelete)
	sc.Annotations = map[string]string{volume.AnnDefaultClass: "true"}
	if _, err := e.Client.StorageV1().StorageClasses().Create(e.Ctx, sc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Client.CoreV1().PersistentVolumeClaims("default").Create(e.Ctx, pvc("www", "-", "1Gi"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(10*time.Second, "default class", func() error {
		if c := e.claim("www"); c.Spec.StorageClassName == nil || *c.Spec.StorageClassName != "local-path" {
			return controllertest.Errorf("class %v", c.Spec.StorageClassName)
		}
		return nil
	})
	e.waitEvent("www", "WaitForFirstConsumer", "waiting for first consumer to be created before binding")
	c := e.claim("www")
	if c.Status.Phase != corev1.ClaimPending {
		t.Fatalf("phase %q", c.Status.Phase)
	}
	p := []byte(`{"metadata":{"annotations":{"` + volume.AnnSelectedNode + `":"n1"}}}`)
	if _, err := e.Client.CoreV1().PersistentVolumeClaims("default").Patch(e.Ctx, "www", types.MergePatchType, p, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	c = e.waitClaim("www", corev1.ClaimBound)
	pv := e.waitVolume(c.Spec.VolumeName, corev1.VolumeBound)
	if want := "/var/lib/skiff/storage/pvc-" + string(c.UID); pv.Spec.HostPath == nil || pv.Spec.HostPath.Path != want {
		t.Fatalf("hostPath %+v, want %s", pv.Spec.HostPath, want)
	}
	if !volume.NodeMatches(pv, node) || volume.NodeMatches(pv, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2", Labels: map[string]string{corev1.LabelHostname: "n2"}}}) {
		t.Fatalf("node affinity %+v", pv.Spec.NodeAffinity)
	}
	if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete || pv.Annotations[volume.AnnProvisionedBy] != volume.LocalPathProvisioner {
		t.Fatalf("volume %+v", pv.ObjectMeta)
	}
	e.waitEvent("www", "ProvisioningSucceeded", pv.Name)

	// Expansion: the volume and the claim's capacity follow the request.
	c.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("3Gi")
	if _, err := e.Client.CoreV1().PersistentVolumeClaims("default").Update(e.Ctx, c, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(10*time.Second, "expanded", func() error {
		got := e.claim("www").Status.Capacity[corev1.ResourceStorage]
		if got.String() != "3Gi" {
			return controllertest.Errorf("capacity %s", got.String())
		}
		return nil
	})

	if err := e.Client.CoreV1().PersistentVolumeClaims("default").Delete(e.Ctx, "www", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitVolume(pv.Name, corev1.VolumeReleased)
	// The agent deletes it: the protection finalizer does not hold it.
	if err := e.Client.CoreV1().PersistentVolumes().Delete(e.Ctx, pv.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(10*time.Second, "volume gone", func() error {
		_, err := e.Client.CoreV1().PersistentVolumes().Get(e.Ctx, pv.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return controllertest.Errorf("still there: %v", err)
	})
}

// TestClaimProtection: a claim in use by a pod is not removed until the
// pod is gone.
func TestClaimProtection(t *testing.T) {
	e := start(t)
	if _, err := e.Client.CoreV1().PersistentVolumeClaims("default").Create(e.Ctx, pvc("used", "", "1Gi"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(10*time.Second, "finalizer", func() error {
		if !contains(e.claim("used").Finalizers, volume.PVCProtection) {
			return controllertest.Errorf("no finalizer")
		}
		return nil
	})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "c", Image: "x"}},
		Volumes: []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "used"}}}}}}
	if _, err := e.Client.CoreV1().Pods("default").Create(e.Ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.Client.CoreV1().PersistentVolumeClaims("default").Delete(e.Ctx, "used", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if c := e.claim("used"); c.DeletionTimestamp == nil {
		t.Fatal("claim not being deleted")
	}
	if err := e.Client.CoreV1().Pods("default").Delete(e.Ctx, "p", metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(10*time.Second, "claim gone", func() error {
		_, err := e.Client.CoreV1().PersistentVolumeClaims("default").Get(e.Ctx, "used", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return controllertest.Errorf("claim still there: %v", err)
	})
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
