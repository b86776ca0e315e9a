package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
)

func (n *realNode) claim(name string) (*corev1.PersistentVolumeClaim, error) {
	return n.cs.CoreV1().PersistentVolumeClaims("default").Get(context.Background(), name, metav1.GetOptions{})
}

// waitBound waits for the claim to be Bound and returns it with its
// volume's directory on the agent's host.
func (n *realNode) waitBound(name string) (*corev1.PersistentVolumeClaim, string) {
	n.t.Helper()
	var c *corev1.PersistentVolumeClaim
	var dir string
	testutil.WaitFor(n.t, 90*time.Second, "claim "+name+" Bound", func() error {
		var err error
		if c, err = n.claim(name); err != nil {
			return err
		}
		if c.Status.Phase != corev1.ClaimBound {
			return fmt.Errorf("phase %q", c.Status.Phase)
		}
		pv, err := n.cs.CoreV1().PersistentVolumes().Get(context.Background(), c.Spec.VolumeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if pv.Spec.HostPath == nil {
			return fmt.Errorf("volume %s is not a hostPath volume", pv.Name)
		}
		dir = pv.Spec.HostPath.Path
		return nil
	})
	return c, dir
}

// waitPodPhase is waitPod that shows the pod's conditions, the claims'
// events and the master's log when it fails.
func (n *realNode) waitPodPhase(name string, ph corev1.PodPhase, other func(*corev1.Pod) error) *corev1.Pod {
	n.t.Helper()
	var last *corev1.Pod
	err := testutil.Poll(90*time.Second, func() error {
		p, err := n.cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		last = p
		if other != nil {
			if err := other(p); err != nil {
				return err
			}
		}
		return phase(ph)(p)
	})
	if err != nil {
		evs, _ := n.cs.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
		var lines []string
		for _, e := range evs.Items {
			lines = append(lines, e.InvolvedObject.Kind+"/"+e.InvolvedObject.Name+" "+e.Reason+": "+e.Message)
		}
		cond := ""
		if last != nil {
			cond = fmt.Sprintf("%+v", last.Status.Conditions)
		}
		n.t.Fatalf("pod %s: %v\nconditions %s\nevents:\n%s\n--- master log ---\n%s\n--- agent log ---\n%s", name, err, cond,
			strings.Join(lines, "\n"), n.master.LogTail(40), n.agent.LogTail(30))
	}
	return last
}

// deleteOnly deletes a pod without waiting (its StatefulSet makes a new
// one of the same name).
func (n *realNode) deleteOnly(name string) {
	n.t.Helper()
	if err := n.cs.CoreV1().Pods("default").Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		n.t.Fatal(err)
	}
}

func fileHas(path, want string, count int) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if got := strings.Count(string(b), want); got != count {
		return fmt.Errorf("%s holds %q %d times, want %d: %q", path, want, got, count, b)
	}
	return nil
}

func (n *realNode) waitGone(what string, get func() error) {
	n.t.Helper()
	testutil.WaitFor(n.t, 90*time.Second, what+" gone", func() error {
		err := get()
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there: %v", err)
	})
}

// TestLocalPathStorage: the built-in local-path storage end to end with
// real containers: a StatefulSet's claims on the default class, data kept
// across pod deletion and an agent restart, Delete and Retain reclaim, a
// claim of a missing class, and kubectl apply of a file with a claim.
func TestLocalPathStorage(t *testing.T) {
	n := startRealNode(t)
	ctx := context.Background()
	storageDir := filepath.Join(n.agent.DataDir, "storage")

	testutil.WaitFor(t, 30*time.Second, "default class local-path", func() error {
		sc, err := n.cs.StorageV1().StorageClasses().Get(ctx, "local-path", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if sc.Annotations["storageclass.kubernetes.io/is-default-class"] != "true" || sc.Provisioner != "skiff.io/local-path" ||
			sc.VolumeBindingMode == nil || *sc.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer {
			return fmt.Errorf("class %+v", sc)
		}
		return nil
	})

	t.Run("ApplyFileWithClaim", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "app.yaml")
		manifest := `apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: applied
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 8Mi
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: applied-config
data:
  k: v
`
		if err := os.WriteFile(file, []byte(manifest), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := n.kubectl("apply", "-f", file)
		if err != nil || !strings.Contains(out, "persistentvolumeclaim/applied created") || !strings.Contains(out, "configmap/applied-config created") {
			t.Fatalf("kubectl apply: %v: %s", err, out)
		}
		if _, err := n.cs.CoreV1().ConfigMaps("default").Get(ctx, "applied-config", metav1.GetOptions{}); err != nil {
			t.Fatal(err)
		}
		out, err = n.kubectl("get", "pvc", "applied")
		if err != nil || !strings.Contains(out, "STORAGECLASS") || !strings.Contains(out, "Pending") {
			t.Fatalf("kubectl get pvc: %v: %s", err, out)
		}
	})

	t.Run("MissingClassStaysPending", func(t *testing.T) {
		c := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "orphan"}, Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: ptrTo("does-not-exist"), AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Mi")}}}}
		if _, err := n.cs.CoreV1().PersistentVolumeClaims("default").Create(ctx, c, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 30*time.Second, "event on orphan", func() error {
			evs, err := n.cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=orphan"})
			if err != nil {
				return err
			}
			for _, e := range evs.Items {
				if e.Reason == "ProvisioningFailed" && strings.Contains(e.Message, `"does-not-exist" not found`) {
					return nil
				}
			}
			return fmt.Errorf("no ProvisioningFailed event: %+v", evs.Items)
		})
		if c, err := n.claim("orphan"); err != nil || c.Status.Phase != corev1.ClaimPending {
			t.Fatalf("orphan: %v %+v", err, c)
		}
	})

	t.Run("StatefulSet", func(t *testing.T) {
		grace := int64(1)
		set := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: appsv1.StatefulSetSpec{
			Replicas: ptrTo(int32(2)), ServiceName: "web", PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{TerminationGracePeriodSeconds: &grace, Containers: []corev1.Container{{
					Name: "main", Image: busyboxRef, ImagePullPolicy: corev1.PullIfNotPresent,
					Command:      []string{"sh", "-c", "hostname >> /data/log; exec sleep 3600"},
					VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
				}}}},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"},
				Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("16Mi")}}}}},
		}}
		if _, err := n.cs.AppsV1().StatefulSets("default").Create(ctx, set, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = n.cs.AppsV1().StatefulSets("default").Delete(context.Background(), "web", metav1.DeleteOptions{})
		})
		dirs := map[string]string{}
		uids := map[string]string{}
		for _, ord := range []string{"0", "1"} {
			pod := "web-" + ord
			p := n.waitPodPhase(pod, corev1.PodRunning, nil)
			uids[pod] = string(p.UID)
			c, dir := n.waitBound("data-web-" + ord)
			if c.Spec.StorageClassName == nil || *c.Spec.StorageClassName != "local-path" {
				t.Fatalf("claim class %v", c.Spec.StorageClassName)
			}
			if filepath.Dir(dir) != storageDir {
				t.Fatalf("volume dir %s not under %s", dir, storageDir)
			}
			dirs[pod] = dir
			testutil.WaitFor(t, 30*time.Second, pod+" wrote its name", func() error { return fileHas(filepath.Join(dir, "log"), pod, 1) })
			out, err := n.kubectl("exec", pod, "--", "cat", "/data/log")
			if err != nil || strings.TrimSpace(out) != pod {
				t.Fatalf("kubectl exec %s cat: %v: %q", pod, err, out)
			}
		}
		out, err := n.kubectl("get", "pvc")
		if err != nil || !strings.Contains(out, "data-web-0") || !strings.Contains(out, "Bound") || !strings.Contains(out, "16Mi") || !strings.Contains(out, "RWO") {
			t.Fatalf("kubectl get pvc: %v\n%s", err, out)
		}

		// A deleted pod comes back on the same claim and finds its data.
		n.deleteOnly("web-0")
		n.waitPodPhase("web-0", corev1.PodRunning, func(p *corev1.Pod) error {
			if string(p.UID) == uids["web-0"] {
				return fmt.Errorf("uid %s: not recreated yet", p.UID)
			}
			return nil
		})
		testutil.WaitFor(t, 30*time.Second, "web-0 appended", func() error { return fileHas(filepath.Join(dirs["web-0"], "log"), "web-0", 2) })

		// An agent restart keeps the data; a pod recreated after it too.
		n.agent.Stop()
		n.agent.Start()
		waitNodeReady(t, n.cs, "real-1")
		n.deleteOnly("web-1")
		n.waitPodPhase("web-1", corev1.PodRunning, func(p *corev1.Pod) error {
			if string(p.UID) == uids["web-1"] {
				return fmt.Errorf("uid %s: not recreated yet", p.UID)
			}
			return nil
		})
		testutil.WaitFor(t, 30*time.Second, "web-1 appended", func() error { return fileHas(filepath.Join(dirs["web-1"], "log"), "web-1", 2) })
		if err := fileHas(filepath.Join(dirs["web-0"], "log"), "web-0", 2); err != nil {
			t.Fatal(err)
		}

		// Claims outlive their set; deleting one (policy Delete) removes
		// its directory and volume.
		if err := n.cs.AppsV1().StatefulSets("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, pod := range []string{"web-0", "web-1"} {
			n.waitGone("pod "+pod, func() error {
				_, err := n.cs.CoreV1().Pods("default").Get(ctx, pod, metav1.GetOptions{})
				return err
			})
		}
		c1, _ := n.waitBound("data-web-1")
		if err := n.cs.CoreV1().PersistentVolumeClaims("default").Delete(ctx, "data-web-1", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		n.waitGone("volume "+c1.Spec.VolumeName, func() error {
			_, err := n.cs.CoreV1().PersistentVolumes().Get(ctx, c1.Spec.VolumeName, metav1.GetOptions{})
			return err
		})
		if _, err := os.Stat(dirs["web-1"]); !os.IsNotExist(err) {
			t.Fatalf("directory %s after its claim was deleted: %v", dirs["web-1"], err)
		}
		if _, err := os.Stat(dirs["web-0"]); err != nil {
			t.Fatalf("the other claim's directory: %v", err)
		}

		// Expansion: the default class allows it; the volume and the
		// claim's capacity follow.
		if out, err := n.kubectl("patch", "pvc", "data-web-0", "-p", `{"spec":{"resources":{"requests":{"storage":"32Mi"}}}}`); err != nil {
			t.Fatalf("kubectl patch pvc: %v: %s", err, out)
		}
		testutil.WaitFor(t, 30*time.Second, "data-web-0 expanded", func() error {
			c, err := n.claim("data-web-0")
			if err != nil {
				return err
			}
			pv, err := n.cs.CoreV1().PersistentVolumes().Get(ctx, c.Spec.VolumeName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			got, pvCap := c.Status.Capacity[corev1.ResourceStorage], pv.Spec.Capacity[corev1.ResourceStorage]
			if got.String() != "32Mi" || pvCap.String() != "32Mi" {
				return fmt.Errorf("claim %s, volume %s", got.String(), pvCap.String())
			}
			return nil
		})
		out, err = n.kubectl("get", "pv")
		if err != nil || !strings.Contains(out, "RECLAIM POLICY") || !strings.Contains(out, "default/data-web-0") || !strings.Contains(out, "32Mi") {
			t.Fatalf("kubectl get pv: %v\n%s", err, out)
		}
	})

	t.Run("RetainKeepsDirectory", func(t *testing.T) {
		retain, wffc := corev1.PersistentVolumeReclaimRetain, storagev1.VolumeBindingWaitForFirstConsumer
		sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "keep"}, Provisioner: "skiff.io/local-path",
			ReclaimPolicy: &retain, VolumeBindingMode: &wffc}
		if _, err := n.cs.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		c := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "kept"}, Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: ptrTo("keep"), AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Mi")}}}}
		if _, err := n.cs.CoreV1().PersistentVolumeClaims("default").Create(ctx, c, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// Scheduled by the scheduler (no nodeName): it selects the node.
		p := bbPod("keeper", corev1.RestartPolicyNever, "echo kept > /data/file")
		p.Spec.NodeName = ""
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "d", MountPath: "/data"}}
		p.Spec.Volumes = []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "kept"}}}}
		n.create(p)
		n.waitPodPhase("keeper", corev1.PodSucceeded, nil)
		bound, dir := n.waitBound("kept")
		if bound.Annotations["volume.kubernetes.io/selected-node"] != "real-1" {
			t.Fatalf("selected node annotation: %v", bound.Annotations)
		}
		n.deletePod("keeper")
		if err := n.cs.CoreV1().PersistentVolumeClaims("default").Delete(ctx, "kept", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 60*time.Second, "volume Released", func() error {
			pv, err := n.cs.CoreV1().PersistentVolumes().Get(ctx, bound.Spec.VolumeName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if pv.Status.Phase != corev1.VolumeReleased {
				return fmt.Errorf("phase %s", pv.Status.Phase)
			}
			return nil
		})
		if err := fileHas(filepath.Join(dir, "file"), "kept", 1); err != nil {
			t.Fatalf("retained data: %v", err)
		}
	})
}
