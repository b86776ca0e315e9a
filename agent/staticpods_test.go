package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const staticManifest = `apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: static-c
    image: present:1.0
`

// TestStaticPodAndMirror: a manifest dropped into the directory runs and
// its mirror pod appears (the kubelet's name, annotations and owner);
// deleting the mirror makes it again (the file wins); removing the file
// stops the pod and removes the mirror.
func TestStaticPodAndMirror(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	dir := filepath.Join(h.dir, "agent", "manifests")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "web.yaml"), []byte(staticManifest), 0o644); err != nil {
		t.Fatal(err)
	}
	h.waitFor("static pod running", func() error {
		if n := runningContainers(h.rt, "static-c"); n != 1 {
			return fmt.Errorf("%d running", n)
		}
		return nil
	})
	name := "web-" + testNode
	m := h.waitPod(name, "mirror pod Running", phaseIs(corev1.PodRunning))
	if m.Annotations["kubernetes.io/config.mirror"] == "" || m.Annotations["kubernetes.io/config.source"] != "file" {
		t.Fatalf("mirror annotations %v", m.Annotations)
	}
	if len(m.OwnerReferences) != 1 || m.OwnerReferences[0].Kind != "Node" || m.OwnerReferences[0].Name != testNode {
		t.Fatalf("mirror owners %v", m.OwnerReferences)
	}

	zero := int64(0)
	if err := h.cs.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("mirror pod made again", func() error {
		p, err := h.cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.UID == m.UID {
			return fmt.Errorf("still the old mirror")
		}
		return nil
	})
	h.waitPod(name, "new mirror pod Running", phaseIs(corev1.PodRunning))
	if ids := h.rt.ContainerIDs("static-c"); len(ids) != 1 {
		t.Fatalf("the static pod restarted when its mirror was deleted: %d containers", len(ids))
	}

	if err := os.Remove(filepath.Join(dir, "web.yaml")); err != nil {
		t.Fatal(err)
	}
	h.waitFor("static pod stopped and mirror removed", func() error {
		if n := runningContainers(h.rt, "static-c"); n != 0 {
			return fmt.Errorf("%d running", n)
		}
		if _, err := h.cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{}); err == nil {
			return fmt.Errorf("mirror still there")
		}
		return nil
	})
}
