package admission_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/controller/controllertest"
	"github.com/skiff-io/skiff/server/controller/resourcequota"
)

func pod(name, cpu string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}}}
	if cpu != "" {
		p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}
	}
	return p
}

func TestPodDefaults(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{Admission: true})
	p, err := e.Client.CoreV1().Pods("default").Create(e.Ctx, pod("p", ""), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.ServiceAccountName != "default" {
		t.Fatalf("serviceAccountName %q", p.Spec.ServiceAccountName)
	}
	found := 0
	for _, tol := range p.Spec.Tolerations {
		if (tol.Key == corev1.TaintNodeNotReady || tol.Key == corev1.TaintNodeUnreachable) && tol.Effect == corev1.TaintEffectNoExecute &&
			tol.TolerationSeconds != nil && *tol.TolerationSeconds == 300 {
			found++
		}
	}
	if found != 2 {
		t.Fatalf("tolerations %+v", p.Spec.Tolerations)
	}
	// A pod's own toleration is kept.
	q := pod("q", "")
	secs := int64(5)
	q.Spec.Tolerations = []corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &secs}}
	if q, err = e.Client.CoreV1().Pods("default").Create(e.Ctx, q, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(q.Spec.Tolerations) != 2 || *q.Spec.Tolerations[0].TolerationSeconds != 5 {
		t.Fatalf("tolerations %+v", q.Spec.Tolerations)
	}
}

func TestLimitRanger(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{Admission: true})
	lr := &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "lr"}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
		Type:           corev1.LimitTypeContainer,
		Default:        corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")},
		DefaultRequest: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
		Max:            corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")},
		Min:            corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m")},
	}}}}
	if _, err := e.Client.CoreV1().LimitRanges("default").Create(e.Ctx, lr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := e.Client.CoreV1().Pods("default").Create(e.Ctx, pod("d", ""), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := p.Spec.Containers[0].Resources
	if r.Requests.Cpu().String() != "100m" || r.Limits.Cpu().String() != "500m" || p.Annotations["kubernetes.io/limit-ranger"] == "" {
		t.Fatalf("defaults: %+v %v", r, p.Annotations)
	}
	big := pod("big", "2")
	big.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}
	_, err = e.Client.CoreV1().Pods("default").Create(e.Ctx, big, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "maximum cpu usage per Container is 1, but limit is 2") {
		t.Fatalf("over max: %v", err)
	}
	_, err = e.Client.CoreV1().Pods("default").Create(e.Ctx, pod("small", "10m"), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "minimum cpu usage per Container is 50m, but request is 10m") {
		t.Fatalf("under min: %v", err)
	}
}

func TestResourceQuota(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{Admission: true})
	rq := resourcequota.New(e.CC)
	e.Start(func(ctx context.Context) { rq.Run(ctx, 1) })
	q := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "q"}, Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourcePods: resource.MustParse("3"),
	}}}
	if _, err := e.Client.CoreV1().ResourceQuotas("default").Create(e.Ctx, q, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Admission charges a new quota before the controller counts it.
	if _, err := e.Client.CoreV1().Pods("default").Create(e.Ctx, pod("a", "1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := e.Client.CoreV1().Pods("default").Create(e.Ctx, pod("b", "2"), metav1.CreateOptions{})
	want := `pods "b" is forbidden: exceeded quota: q, requested: cpu=2, used: cpu=1, limited: cpu=2`
	if !apierrors.IsForbidden(err) || err.Error() != want {
		t.Fatalf("over quota:\n got %v\nwant %s", err, want)
	}
	_, err = e.Client.CoreV1().Pods("default").Create(e.Ctx, pod("c", ""), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "failed quota: q: must specify cpu") {
		t.Fatalf("no cpu request: %v", err)
	}
	e.WaitFor(10*time.Second, "quota status", func() error {
		q, _ := e.Client.CoreV1().ResourceQuotas("default").Get(e.Ctx, "q", metav1.GetOptions{})
		if q.Status.Used.Cpu().String() != "1" || q.Status.Used.Pods().String() != "1" || q.Status.Hard.Cpu().String() != "2" {
			return controllertest.Errorf("status %+v", q.Status)
		}
		return nil
	})
	// Freed by a delete (the controller recounts), the quota admits again.
	if err := e.Client.CoreV1().Pods("default").Delete(e.Ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(10*time.Second, "usage released", func() error {
		_, err := e.Client.CoreV1().Pods("default").Create(e.Ctx, pod("b", "2"), metav1.CreateOptions{})
		return err
	})
}
