package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// podManifest is a pod of one busybox container that mutate changes.
func podManifest(t *testing.T, name string, mutate func(*corev1.Pod)) string {
	t.Helper()
	p := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox", Command: []string{"sleep", "3600"}}}}}
	mutate(p)
	b, err := yaml.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPodSecurityAdmission: a user bound to "edit" in a namespace cannot
// create privileged, hostPath "/", hostPID or hostNetwork pods (403 naming
// the failed Pod Security checks, as kubectl shows it), gets a Warning for
// a pod that is baseline but not restricted, and may create all of them
// once an administrator labels the namespace privileged.
func TestPodSecurityAdmission(t *testing.T) {
	m, admin := kubectlMaster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin("create", "namespace", "team")
	admin("create", "serviceaccount", "dev", "-n", "team")
	admin("create", "rolebinding", "dev-edit", "-n", "team", "--clusterrole", "edit", "--serviceaccount", "team:dev")
	tok := kubectlCreateToken(t, m.Kubeconfig(), "dev", "-n", "team")
	devKubeconfig := filepath.Join(t.TempDir(), "dev.kubeconfig")
	kcfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: skiff, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: dev, user: {token: %q}}]
contexts: [{name: dev, context: {cluster: skiff, user: dev, namespace: team}}]
current-context: dev
`, m.URL(), filepath.Join(m.DataDir, "tls", "ca.crt"), tok)
	if err := os.WriteFile(devKubeconfig, []byte(kcfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// dev applies a manifest with the real kubectl: combined output and
	// whether it succeeded.
	apply := func(manifest string) (string, error) {
		c := exec.CommandContext(ctx, "/usr/bin/kubectl", "--kubeconfig", devKubeconfig, "apply", "-f", "-")
		c.Stdin = strings.NewReader(manifest)
		out, err := c.CombinedOutput()
		return string(out), err
	}
	dev := tokenClient(t, m, tok)
	testutil.WaitFor(t, 10*time.Second, "edit binding in effect", func() error {
		_, err := dev.CoreV1().Pods("team").List(ctx, metav1.ListOptions{})
		return err
	})

	yes := true
	refused := []struct {
		name, manifest, check string
	}{
		{"privileged", podManifest(t, "privileged", func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: &yes}
		}), `privileged (container "c" must not set securityContext.privileged=true)`},
		{"hostroot", podManifest(t, "hostroot", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "root", MountPath: "/host"}}
		}), `hostPath volumes (volume "root")`},
		{"hostpid", podManifest(t, "hostpid", func(p *corev1.Pod) { p.Spec.HostPID = true }), `host namespaces (hostPID=true)`},
		{"hostnet", podManifest(t, "hostnet", func(p *corev1.Pod) { p.Spec.HostNetwork = true }), `host namespaces (hostNetwork=true)`},
	}
	for _, tc := range refused {
		out, err := apply(tc.manifest)
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("%s: kubectl apply succeeded or did not run: %v\n%s", tc.name, err, out)
		}
		want := fmt.Sprintf(`Error from server (Forbidden): error when creating "STDIN": pods %q is forbidden: violates PodSecurity "baseline:latest": %s`, tc.name, tc.check)
		if !strings.Contains(out, want) {
			t.Errorf("%s: kubectl said\n%s\nwant %s", tc.name, out, want)
		}
	}
	// The same refusal as a Status: 403, reason Forbidden, pod not stored.
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "privileged"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{
		Name: "c", Image: "busybox", SecurityContext: &corev1.SecurityContext{Privileged: &yes}}}}}
	_, err := dev.CoreV1().Pods("team").Create(ctx, p, metav1.CreateOptions{})
	var se apierrors.APIStatus
	if !errors.As(err, &se) || se.Status().Code != 403 || se.Status().Reason != metav1.StatusReasonForbidden ||
		!strings.Contains(se.Status().Message, `violates PodSecurity "baseline:latest": privileged`) {
		t.Fatalf("privileged pod through the Go client: %v", err)
	}
	if out := admin("get", "pods", "-n", "team", "-o", "name"); strings.TrimSpace(out) != "" && !strings.Contains(out, "No resources") {
		t.Fatalf("refused pods were stored: %s", out)
	}

	// Baseline but not restricted: admitted, with kubectl printing the
	// Warning header.
	out, err := apply(podManifest(t, "plain", func(*corev1.Pod) {}))
	if err != nil {
		t.Fatalf("baseline pod refused: %v\n%s", err, out)
	}
	if !strings.Contains(out, `Warning: would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false`) ||
		!strings.Contains(out, "pod/plain created") {
		t.Fatalf("baseline pod: kubectl said\n%s", out)
	}

	// An administrator labels the namespace privileged: all admitted.
	admin("label", "namespace", "team", "pod-security.kubernetes.io/enforce=privileged")
	for _, tc := range refused {
		out, err := apply(tc.manifest)
		if err != nil || !strings.Contains(out, "pod/"+tc.name+" created") {
			t.Errorf("%s in a privileged namespace: %v\n%s", tc.name, err, out)
		}
	}
	// Back to baseline: the label is accepted, with a warning naming the
	// pods that violate it.
	out = admin("label", "--overwrite", "namespace", "team", "pod-security.kubernetes.io/enforce=baseline")
	if !strings.Contains(out, `Warning: existing pods in namespace "team" violate the new PodSecurity enforce level "baseline:latest"`) {
		t.Fatalf("relabel: kubectl said\n%s", out)
	}
}
