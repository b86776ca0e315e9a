package admission_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/server/admission"
	"github.com/skiff-io/skiff/server/controller/controllertest"
)

// warnings collects the Warning headers a client saw.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(code int, agent, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.msgs
	w.msgs = nil
	return out
}

func warnClient(t *testing.T, e *controllertest.Env) (*kubernetes.Clientset, *warnings) {
	t.Helper()
	w := &warnings{}
	cfg := e.API.RESTConfig()
	cfg.WarningHandler = w
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, w
}

// restrictedPod passes the restricted level.
func restrictedPod(name string) *corev1.Pod {
	no, yes := false, true
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{
		SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: &yes, SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
		Containers: []corev1.Container{{Name: "c", Image: "i", SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: &no, Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		}}},
	}}
}

func privilegedPod(name string) *corev1.Pod {
	p := pod(name, "")
	yes := true
	p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: &yes}
	return p
}

func TestPodSecurityDefaults(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{Admission: true})
	cs, w := warnClient(t, e)
	pods := cs.CoreV1().Pods("default")

	// Baseline is enforced: the 403 names the failed checks.
	hostRoot := pod("hostroot", "")
	hostRoot.Spec.Volumes = []corev1.Volume{{Name: "root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}
	hostNS := pod("hostns", "")
	hostNS.Spec.HostPID, hostNS.Spec.HostNetwork = true, true
	for _, tc := range []struct {
		pod  *corev1.Pod
		want []string
	}{
		{privilegedPod("priv"), []string{`violates PodSecurity "baseline:latest"`, `privileged (container "c" must not set securityContext.privileged=true)`}},
		{hostRoot, []string{`hostPath volumes (volume "root")`}},
		{hostNS, []string{`host namespaces (hostNetwork=true, hostPID=true)`}},
	} {
		_, err := pods.Create(e.Ctx, tc.pod, metav1.CreateOptions{})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("%s: want 403, got %v", tc.pod.Name, err)
		}
		for _, s := range tc.want {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: %q does not say %q", tc.pod.Name, err, s)
			}
		}
	}
	if _, err := pods.Get(e.Ctx, "priv", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("refused pod stored: %v", err)
	}

	// Baseline-OK but not restricted: admitted with a warning.
	w.take()
	if _, err := pods.Create(e.Ctx, pod("plain", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(w.take(), "\n"); !strings.Contains(got, `would violate PodSecurity "restricted:latest"`) ||
		!strings.Contains(got, "allowPrivilegeEscalation != false") {
		t.Fatalf("warnings: %q", got)
	}
	// Restricted: no warning.
	if _, err := pods.Create(e.Ctx, restrictedPod("tight"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := w.take(); len(got) != 0 {
		t.Fatalf("restricted pod warned: %q", got)
	}

	// kube-system is exempt.
	e.Namespace("kube-system")
	if _, err := cs.CoreV1().Pods("kube-system").Create(e.Ctx, privilegedPod("priv"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("kube-system: %v", err)
	}

	// A namespace labelled privileged admits them.
	e.Namespace("ops")
	ns, err := cs.CoreV1().Namespaces().Get(e.Ctx, "ops", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns.Labels = map[string]string{"pod-security.kubernetes.io/enforce": "privileged", "pod-security.kubernetes.io/warn": "privileged"}
	if _, err := cs.CoreV1().Namespaces().Update(e.Ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*corev1.Pod{privilegedPod("priv"), hostRoot, hostNS} {
		p = p.DeepCopy()
		p.ResourceVersion = ""
		if _, err := cs.CoreV1().Pods("ops").Create(e.Ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatalf("ops %s: %v", p.Name, err)
		}
	}
	if got := w.take(); len(got) != 0 {
		t.Fatalf("privileged namespace warned: %q", got)
	}

	// Raising its enforce level warns about the pods that would fail it.
	ns, _ = cs.CoreV1().Namespaces().Get(e.Ctx, "ops", metav1.GetOptions{})
	ns.Labels["pod-security.kubernetes.io/enforce"] = "baseline"
	if _, err := cs.CoreV1().Namespaces().Update(e.Ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(w.take(), "\n")
	if !strings.Contains(got, `existing pods in namespace "ops" violate the new PodSecurity enforce level "baseline:latest"`) ||
		!strings.Contains(got, "priv: privileged") {
		t.Fatalf("namespace warnings: %q", got)
	}
	// An invalid level is refused (422).
	ns, _ = cs.CoreV1().Namespaces().Get(e.Ctx, "ops", metav1.GetOptions{})
	ns.Labels["pod-security.kubernetes.io/enforce"] = "lax"
	if _, err := cs.CoreV1().Namespaces().Update(e.Ctx, ns, metav1.UpdateOptions{}); !apierrors.IsInvalid(err) {
		t.Fatalf("invalid level: %v", err)
	}

	// Workloads get warnings only, as upstream; their template's pods are
	// refused when created.
	replicas := int32(1)
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "d"}, Spec: appsv1.DeploymentSpec{
		Replicas: &replicas,
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "d"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "d"}}, Spec: privilegedPod("").Spec},
	}}
	if _, err := cs.AppsV1().Deployments("default").Create(e.Ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatalf("deployment refused: %v", err)
	}
	if got := strings.Join(w.take(), "\n"); !strings.Contains(got, `would violate PodSecurity "restricted:latest": privileged`) {
		t.Fatalf("deployment warnings: %q", got)
	}
	// A scale leaves the template alone: no new warning.
	if _, err := cs.AppsV1().Deployments("default").UpdateScale(e.Ctx, "d", &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{Name: "d", Namespace: "default"}, Spec: autoscalingv1.ScaleSpec{Replicas: 2},
	}, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := w.take(); len(got) != 0 {
		t.Fatalf("scale warned: %q", got)
	}
}

func TestPodSecurityConfigFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "psa.yaml")
	if err := os.WriteFile(path, []byte(`apiVersion: pod-security.admission.config.k8s.io/v1
kind: PodSecurityConfiguration
defaults:
  enforce: restricted
exemptions:
  namespaces: [tools]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := admission.LoadPodSecurityConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Defaults.Enforce != "restricted" || cfg.Defaults.Warn != "privileged" || len(cfg.Exemptions.Namespaces) != 1 {
		t.Fatalf("config %+v", cfg)
	}
	if err := os.WriteFile(path, []byte("apiVersion: pod-security.admission.config.k8s.io/v1\nkind: PodSecurityConfiguration\ndefaults:\n  enforce: lax\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := admission.LoadPodSecurityConfig(path); err == nil || !strings.Contains(err.Error(), "lax") {
		t.Fatalf("invalid level: %v", err)
	}
	if cfg, err := admission.LoadPodSecurityConfig(""); err != nil || cfg.Defaults.Enforce != "baseline" || cfg.Defaults.Warn != "restricted" || cfg.Defaults.Audit != "privileged" ||
		cfg.Exemptions.Namespaces[0] != "kube-system" {
		t.Fatalf("default: %+v %v", cfg, err)
	}
}
