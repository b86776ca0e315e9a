package quota

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestPodUsage(t *testing.T) {
	rl := func(cpu, mem string) corev1.ResourceList {
		l := corev1.ResourceList{}
		if cpu != "" {
			l[corev1.ResourceCPU] = resource.MustParse(cpu)
		}
		if mem != "" {
			l[corev1.ResourceMemory] = resource.MustParse(mem)
		}
		return l
	}
	p := &corev1.Pod{Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{{Resources: corev1.ResourceRequirements{Requests: rl("3", "")}}},
		Containers: []corev1.Container{
			{Resources: corev1.ResourceRequirements{Requests: rl("1", "1Gi"), Limits: rl("2", "")}},
			{Resources: corev1.ResourceRequirements{Requests: rl("500m", "")}},
		},
	}}
	u := Usage(schema.GroupResource{Resource: "pods"}, p)
	for name, want := range map[corev1.ResourceName]string{
		"pods": "1", "count/pods": "1", "cpu": "3", "requests.cpu": "3", "memory": "1Gi", "limits.cpu": "2",
	} {
		got := u[name]
		if got.Cmp(resource.MustParse(want)) != 0 {
			t.Errorf("%s = %s, want %s", name, got.String(), want)
		}
	}
	p.Status.Phase = corev1.PodSucceeded
	if len(Usage(schema.GroupResource{Resource: "pods"}, p)) != 0 {
		t.Error("a finished pod uses nothing")
	}
	if got := PrettyPrint(corev1.ResourceList{"memory": resource.MustParse("1Gi"), "cpu": resource.MustParse("2")}); got != "cpu=2,memory=1Gi" {
		t.Errorf("PrettyPrint = %q", got)
	}
	if n := CountName(schema.GroupResource{Group: "apps", Resource: "deployments"}); n != "count/deployments.apps" {
		t.Errorf("CountName = %q", n)
	}
	if m := MissingConstraints(&corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{}}}}, corev1.ResourceList{"cpu": resource.MustParse("1"), "pods": resource.MustParse("1")}); len(m) != 1 || m[0] != "cpu" {
		t.Errorf("MissingConstraints = %v", m)
	}
}

func TestScopes(t *testing.T) {
	best := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{}}}}
	ads := int64(10)
	term := &corev1.Pod{Spec: corev1.PodSpec{ActiveDeadlineSeconds: &ads, Containers: []corev1.Container{{Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}}}}}
	q := func(scopes ...corev1.ResourceQuotaScope) *corev1.ResourceQuota {
		return &corev1.ResourceQuota{Spec: corev1.ResourceQuotaSpec{Scopes: scopes}}
	}
	for _, tc := range []struct {
		q    *corev1.ResourceQuota
		pod  *corev1.Pod
		want bool
	}{
		{q(), best, true},
		{q(corev1.ResourceQuotaScopeBestEffort), best, true},
		{q(corev1.ResourceQuotaScopeBestEffort), term, false},
		{q(corev1.ResourceQuotaScopeNotBestEffort, corev1.ResourceQuotaScopeTerminating), term, true},
		{q(corev1.ResourceQuotaScopeNotTerminating), term, false},
	} {
		if got := Matches(tc.q, tc.pod); got != tc.want {
			t.Errorf("scopes %v: %v, want %v", tc.q.Spec.Scopes, got, tc.want)
		}
	}
	if Matches(q(corev1.ResourceQuotaScopeBestEffort), &corev1.ConfigMap{}) {
		t.Error("a scoped quota counts only pods")
	}
}

// TestPodUsageEphemeralAndExtended: as kube's pod evaluator (the
// conformance test "ResourceQuota should create a ResourceQuota and
// capture the life of a pod"): ephemeral-storage counts under its own
// name too, extended resources under requests.<name>, hugepages under both.
func TestPodUsageEphemeralAndExtended(t *testing.T) {
	req := corev1.ResourceList{
		corev1.ResourceEphemeralStorage: resource.MustParse("30Gi"),
		"example.com/dongle":            resource.MustParse("2"),
		"hugepages-2Mi":                 resource.MustParse("4Mi"),
	}
	p := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Resources: corev1.ResourceRequirements{
		Requests: req, Limits: corev1.ResourceList{"example.com/dongle": resource.MustParse("2")}}}}}}
	u := Usage(schema.GroupResource{Resource: "pods"}, p)
	for name, want := range map[corev1.ResourceName]string{
		"ephemeral-storage": "30Gi", "requests.ephemeral-storage": "30Gi",
		"requests.example.com/dongle": "2", "hugepages-2Mi": "4Mi", "requests.hugepages-2Mi": "4Mi",
	} {
		got, ok := u[name]
		if !ok || got.Cmp(resource.MustParse(want)) != 0 {
			t.Errorf("%s = %s (present %v), want %s", name, got.String(), ok, want)
		}
	}
	for _, name := range []corev1.ResourceName{"example.com/dongle", "limits.example.com/dongle"} {
		if q, ok := u[name]; ok {
			t.Errorf("%s = %s: an extended resource is quota'd only as requests.<name>", name, q.String())
		}
	}
}
