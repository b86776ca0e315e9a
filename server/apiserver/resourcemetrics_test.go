package apiserver_test

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

// fakeResourceMetrics is what the master's metrics store would answer.
type fakeResourceMetrics struct{}

func usage(cpu, mem string) corev1.ResourceList {
	return corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}
}

func (fakeResourceMetrics) NodeMetrics(context.Context) ([]metricsv1beta1.NodeMetrics, error) {
	return []metricsv1beta1.NodeMetrics{{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"zone": "a"}},
		Timestamp:  metav1.Now(), Window: metav1.Duration{Duration: 10 * time.Second},
		Usage: usage("250m", "3Gi"),
	}}, nil
}

func (fakeResourceMetrics) PodMetrics(_ context.Context, ns string) ([]metricsv1beta1.PodMetrics, error) {
	all := []metricsv1beta1.PodMetrics{
		{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", Labels: map[string]string{"app": "web"}},
			Timestamp: metav1.Now(), Window: metav1.Duration{Duration: 10 * time.Second},
			Containers: []metricsv1beta1.ContainerMetrics{{Name: "app", Usage: usage("100m", "64Mi")}, {Name: "side", Usage: usage("5m", "16Mi")}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "job", Namespace: "batch"},
			Timestamp: metav1.Now(), Window: metav1.Duration{Duration: 10 * time.Second},
			Containers: []metricsv1beta1.ContainerMetrics{{Name: "main", Usage: usage("1", "1Gi")}}},
	}
	var out []metricsv1beta1.PodMetrics
	for _, p := range all {
		if ns == "" || p.Namespace == ns {
			out = append(out, p)
		}
	}
	return out, nil
}

// metrics.k8s.io is discovered and answers kubectl top (1.27 to 1.33):
// nodes, pods across namespaces with their containers, a label selector;
// a missing pod is 404; a master without a metrics store answers 503.
func TestKubectlTop(t *testing.T) {
	bins := kubectlBinaries(t)
	for _, v := range []string{"1.28", "1.29", "1.30", "1.31", "1.32"} {
		if p := "/usr/lib/google-cloud-sdk/bin/kubectl." + v; fileExists(p) {
			bins = append(bins, p)
		}
	}
	e := newEnv(t, apiservertest.Options{ResourceMetrics: fakeResourceMetrics{}})
	e.createNamespace("batch")
	if _, err := e.cs.CoreV1().Nodes().Create(e.ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubeconfig := writeKubeconfig(t, e.srv)
	for _, bin := range bins {
		t.Run(filepath.Base(bin), func(t *testing.T) {
			home := t.TempDir()
			run := func(args ...string) string {
				t.Helper()
				ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", kubeconfig, "--request-timeout=20s"}, args...)...)
				cmd.Env = append(os.Environ(), "HOME="+home, "KUBECACHEDIR="+filepath.Join(home, "cache"))
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
				}
				return string(out)
			}
			if out := run("top", "nodes"); !strings.Contains(out, "n1") || !strings.Contains(out, "250m") || !strings.Contains(out, "3072Mi") {
				t.Fatalf("top nodes:\n%s", out)
			}
			out := run("top", "pods", "-A", "--containers")
			for _, want := range []string{"default", "web", "app", "side", "100m", "64Mi", "batch", "job", "main"} {
				if !strings.Contains(out, want) {
					t.Fatalf("top pods -A --containers lacks %q:\n%s", want, out)
				}
			}
			if out := run("top", "pods", "-l", "app=web"); !strings.Contains(out, "web") || !strings.Contains(out, "105m") || strings.Contains(out, "job") {
				t.Fatalf("top pods -l app=web:\n%s", out)
			}
		})
	}
	if r := e.do("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nope", "", nil); r.code != http.StatusNotFound {
		t.Fatalf("missing pod metrics: %d %s", r.code, r.body)
	}
	if r := e.do("DELETE", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web", "", nil); r.code != http.StatusMethodNotAllowed {
		t.Fatalf("delete pod metrics: %d %s", r.code, r.body)
	}
	off := newEnv(t, apiservertest.Options{})
	if r := off.do("GET", "/apis/metrics.k8s.io/v1beta1/nodes", "", nil); r.code != http.StatusServiceUnavailable {
		t.Fatalf("without a store: %d %s", r.code, r.body)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
