package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-io/skiff/runtime/fake"
)

// unreachableClient is a clientset for an API address nothing listens on
// (a port the test held and released): every request fails at once.
func unreachableClient(t *testing.T) kubernetes.Interface {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: "https://" + addr, Timeout: 2 * time.Second,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// runningContainers counts the running fake containers named name.
func runningContainers(rt *fake.FakeRuntime, name string) int {
	n := 0
	for _, id := range rt.ContainerIDs(name) {
		if c, ok := rt.Container(id); ok && c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			n++
		}
	}
	return n
}

// TestCheckpointRestartsPodsWithoutMaster: an agent that restarts after a
// reboot (a fresh runtime: nothing runs) while no master answers starts
// the pods of its checkpoint again; once the API answers, the API's state
// wins: a pod deleted meanwhile is stopped, a new one started, and the
// pod that kept running is not started twice.
func TestCheckpointRestartsPodsWithoutMaster(t *testing.T) {
	h := newHarness(t)
	h.createPod(pod("keep", corev1.RestartPolicyAlways, ctr("keep-c")))
	h.createPod(pod("gone", corev1.RestartPolicyAlways, ctr("gone-c")))
	h.waitPod("keep", "running", phaseIs(corev1.PodRunning))
	h.waitPod("gone", "running", phaseIs(corev1.PodRunning))
	h.waitFor("checkpoint of two pods", func() error {
		cp, err := readCheckpoint(filepath.Join(h.dir, "agent", "checkpoint", "pods.json"), testNode)
		if err != nil {
			return err
		}
		if cp == nil || len(cp.Pods) != 2 || cp.PodCIDR == "" {
			return fmt.Errorf("checkpoint %+v", cp)
		}
		return nil
	})

	// Reboot with the masters gone: a new runtime, an unreachable API.
	h.stop()
	h.rt = fake.NewFakeRuntime()
	dead := unreachableClient(t)
	h.tweak = func(c *Config) { c.Client = dead }
	h.start()
	h.waitFor("checkpointed pods running again without the API", func() error {
		if runningContainers(h.rt, "keep-c") != 1 || runningContainers(h.rt, "gone-c") != 1 {
			return fmt.Errorf("keep-c %d, gone-c %d running", runningContainers(h.rt, "keep-c"), runningContainers(h.rt, "gone-c"))
		}
		return nil
	})

	// Meanwhile, in the API: one pod deleted, a new one created.
	zero := int64(0)
	if err := h.cs.CoreV1().Pods("default").Delete(context.Background(), "gone", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	h.createPod(pod("new", corev1.RestartPolicyAlways, ctr("new-c")))

	// The masters are back (the same runtime: the agent restarts, the
	// machine does not).
	h.stop()
	h.tweak = nil
	h.start()
	h.waitPod("new", "running", phaseIs(corev1.PodRunning))
	h.waitFor("the pod deleted meanwhile stopped", func() error {
		if n := runningContainers(h.rt, "gone-c"); n != 0 {
			return fmt.Errorf("%d gone-c running", n)
		}
		return nil
	})
	h.waitPod("keep", "running", phaseIs(corev1.PodRunning))
	if ids := h.rt.ContainerIDs("keep-c"); len(ids) != 1 {
		t.Fatalf("keep-c ran %d times after the reconnect, want 1 (ids %v)", len(ids), ids)
	}
	h.waitFor("checkpoint follows the API", func() error {
		cp, err := readCheckpoint(filepath.Join(h.dir, "agent", "checkpoint", "pods.json"), testNode)
		if err != nil {
			return err
		}
		names := map[string]bool{}
		for _, p := range cp.Pods {
			names[p.Name] = true
		}
		if len(names) != 2 || !names["keep"] || !names["new"] {
			return fmt.Errorf("checkpoint pods %v", names)
		}
		return nil
	})
}

// TestCheckpointReadsVersion1 opens a checkpoint written in format
// version 1 (testdata), and refuses another version or another node's.
func TestCheckpointReadsVersion1(t *testing.T) {
	cp, err := readCheckpoint(filepath.Join("testdata", "checkpoint-v1.json"), "edge-1")
	if err != nil {
		t.Fatal(err)
	}
	if cp.PodCIDR != "10.42.3.0/24" || len(cp.Pods) != 1 || cp.Pods[0].Name != "web" || cp.Pods[0].Spec.Containers[0].Image != "nginx:1.27" {
		t.Fatalf("checkpoint %+v", cp)
	}
	if _, err := readCheckpoint(filepath.Join("testdata", "checkpoint-v1.json"), "other"); err == nil {
		t.Fatal("another node's checkpoint was accepted")
	}
	p := filepath.Join(t.TempDir(), "pods.json")
	if err := os.WriteFile(p, []byte(`{"version":2,"nodeName":"edge-1","pods":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readCheckpoint(p, "edge-1"); err == nil {
		t.Fatal("version 2 was accepted")
	}
}

// TestVolumeKeptWhenAPIOutOfReach: an agent restarted while no master
// answers keeps a configMap volume as it was written, so that the pod's
// restart policy still applies (the exited container starts again).
func TestVolumeKeptWhenAPIOutOfReach(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "conf", Namespace: "default"}, Data: map[string]string{"k": "v"}}
	if _, err := h.cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := pod("withvol", corev1.RestartPolicyAlways, ctr("vol-c"))
	p.Spec.Volumes = []corev1.Volume{{Name: "conf", VolumeSource: corev1.VolumeSource{
		ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "conf"}}}}}
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "conf", MountPath: "/etc/conf"}}
	h.createPod(p)
	h.waitPod("withvol", "running", phaseIs(corev1.PodRunning))
	h.waitFor("checkpoint", func() error {
		cp, err := readCheckpoint(filepath.Join(h.dir, "agent", "checkpoint", "pods.json"), testNode)
		if err != nil || cp == nil || len(cp.Pods) != 1 {
			return fmt.Errorf("checkpoint %+v, %v", cp, err)
		}
		return nil
	})

	h.stop()
	if err := h.rt.Exit(h.containerOf("vol-c").ID, 1); err != nil {
		t.Fatal(err)
	}
	dead := unreachableClient(t)
	h.tweak = func(c *Config) { c.Client = dead }
	h.start()
	h.waitFor("the container started again without the API", func() error {
		if n := runningContainers(h.rt, "vol-c"); n != 1 {
			return fmt.Errorf("%d running of %d", n, len(h.rt.ContainerIDs("vol-c")))
		}
		return nil
	})
}
