package podautoscaler

import (
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
)

func i32p(v int32) *int32 { return &v }

func sel(s autoscalingv2.ScalingPolicySelect) *autoscalingv2.ScalingPolicySelect { return &s }

func pol(typ autoscalingv2.HPAScalingPolicyType, v, period int32) autoscalingv2.HPAScalingPolicy {
	return autoscalingv2.HPAScalingPolicy{Type: typ, Value: v, PeriodSeconds: period}
}

// Without a behavior: the highest recommendation of the downscale
// window, the default scale-up rate (double, at least 4), min and max.
func TestNormalizeDefault(t *testing.T) {
	h := newHistory(5 * time.Minute)
	check := func(at time.Duration, current, desired, minR, maxR, want int32, able, limited string) {
		t.Helper()
		l := h.normalize("ns/a", t0.Add(at), current, desired, minR, maxR)
		if l.replicas != want || l.ableReason != able || l.limitedReason != limited {
			t.Fatalf("at %v %d->%d: got %d %s %s, want %d %s %s", at, current, desired, l.replicas, l.ableReason, l.limitedReason, want, able, limited)
		}
	}
	check(0, 5, 5, 1, 10, 5, "ReadyForNewScale", "DesiredWithinRange")
	check(time.Minute, 5, 2, 1, 10, 5, "ScaleDownStabilized", "DesiredWithinRange")
	check(4*time.Minute, 5, 3, 1, 10, 5, "ScaleDownStabilized", "DesiredWithinRange")
	// The 5 of t0 is out of the window; 3 (at 4m) is the highest since.
	check(5*time.Minute+time.Second, 5, 2, 1, 10, 3, "ScaleDownStabilized", "DesiredWithinRange")
	check(10*time.Minute, 3, 2, 1, 10, 2, "ReadyForNewScale", "DesiredWithinRange")

	h = newHistory(5 * time.Minute)
	check(0, 1, 10, 1, 10, 4, "ReadyForNewScale", "ScaleUpLimit")
	h = newHistory(5 * time.Minute)
	check(0, 3, 10, 1, 10, 6, "ReadyForNewScale", "ScaleUpLimit")
	h = newHistory(5 * time.Minute)
	check(0, 3, 20, 1, 5, 5, "ReadyForNewScale", "TooManyReplicas")
	h = newHistory(0)
	check(0, 3, 1, 2, 5, 2, "ReadyForNewScale", "TooFewReplicas")
}

// With a behavior: stabilization windows both ways, Pods and Percent
// policies over their periods, selectPolicy Min, Max and Disabled.
func TestNormalizeWithBehavior(t *testing.T) {
	type step struct {
		at               time.Duration
		current, desired int32
		want             int32
		reason           string
	}
	for _, tc := range []struct {
		name  string
		b     autoscalingv2.HorizontalPodAutoscalerBehavior
		steps []step
	}{
		{"pods policy: one pod a minute", autoscalingv2.HorizontalPodAutoscalerBehavior{
			ScaleUp: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: i32p(0), Policies: []autoscalingv2.HPAScalingPolicy{pol("Pods", 1, 60)}},
		}, []step{
			{0, 2, 5, 3, "ScaleUpLimit"},
			{30 * time.Second, 3, 5, 3, "ScaleUpLimit"}, // the period's one pod is spent
			{61 * time.Second, 3, 5, 4, "ScaleUpLimit"},
			{2 * time.Minute, 4, 5, 4, "ScaleUpLimit"}, // the 61s pod is in the period
			{2*time.Minute + 2*time.Second, 4, 5, 5, "DesiredWithinRange"},
		}},
		{"percent policy down: half a minute", autoscalingv2.HorizontalPodAutoscalerBehavior{
			ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: i32p(0), Policies: []autoscalingv2.HPAScalingPolicy{pol("Percent", 50, 60)}},
		}, []step{
			{0, 10, 1, 5, "ScaleDownLimit"},
			{30 * time.Second, 5, 1, 5, "ScaleDownLimit"},
			{61 * time.Second, 5, 1, 2, "ScaleDownLimit"},
			{2 * time.Minute, 2, 1, 2, "ScaleDownLimit"},
			{2*time.Minute + 2*time.Second, 2, 1, 1, "DesiredWithinRange"},
		}},
		{"select max and min", autoscalingv2.HorizontalPodAutoscalerBehavior{
			ScaleUp: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: i32p(0), SelectPolicy: sel(autoscalingv2.MinChangePolicySelect),
				Policies: []autoscalingv2.HPAScalingPolicy{pol("Pods", 4, 60), pol("Percent", 100, 60)}},
		}, []step{{0, 10, 30, 14, "ScaleUpLimit"}}},
		{"select max", autoscalingv2.HorizontalPodAutoscalerBehavior{
			ScaleUp: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: i32p(0),
				Policies: []autoscalingv2.HPAScalingPolicy{pol("Pods", 4, 60), pol("Percent", 100, 60)}},
		}, []step{{0, 10, 30, 20, "ScaleUpLimit"}}},
		{"disabled scale down", autoscalingv2.HorizontalPodAutoscalerBehavior{
			ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: i32p(0), SelectPolicy: sel(autoscalingv2.DisabledPolicySelect),
				Policies: []autoscalingv2.HPAScalingPolicy{pol("Percent", 100, 15)}},
		}, []step{{0, 5, 1, 5, "ScaleDownLimit"}}},
		{"scale-up stabilization: lowest recent", autoscalingv2.HorizontalPodAutoscalerBehavior{
			ScaleUp: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: i32p(60), Policies: []autoscalingv2.HPAScalingPolicy{pol("Pods", 100, 15)}},
		}, []step{
			{0, 3, 4, 4, "DesiredWithinRange"},
			{30 * time.Second, 4, 8, 4, "DesiredWithinRange"}, // 4 within the window
			{61 * time.Second, 4, 8, 8, "DesiredWithinRange"},
		}},
		{"scale-down stabilization: highest recent", autoscalingv2.HorizontalPodAutoscalerBehavior{
			ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: i32p(60), Policies: []autoscalingv2.HPAScalingPolicy{pol("Percent", 100, 15)}},
		}, []step{
			{0, 6, 6, 6, "DesiredWithinRange"},
			{30 * time.Second, 6, 2, 6, "DesiredWithinRange"},
			{61 * time.Second, 6, 2, 2, "DesiredWithinRange"},
			{90 * time.Second, 2, 1, 2, "DesiredWithinRange"}, // 2 of 61s; min 2 too
			{200 * time.Second, 2, 1, 2, "TooFewReplicas"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHistory(5 * time.Minute)
			b := tc.b.DeepCopy()
			if b.ScaleUp == nil {
				b.ScaleUp = &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: i32p(0), Policies: []autoscalingv2.HPAScalingPolicy{pol("Percent", 100, 15)}}
			}
			if b.ScaleDown == nil {
				b.ScaleDown = &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: i32p(0), Policies: []autoscalingv2.HPAScalingPolicy{pol("Percent", 100, 15)}}
			}
			minR := int32(1)
			if tc.name == "scale-down stabilization: highest recent" {
				minR = 2
			}
			for _, s := range tc.steps {
				now := t0.Add(s.at)
				l := h.normalizeWithBehavior("ns/a", now, b, s.current, s.desired, minR, 100)
				if l.replicas != s.want || l.limitedReason != s.reason {
					t.Fatalf("at %v %d->%d: got %d (%s), want %d (%s)", s.at, s.current, s.desired, l.replicas, l.limitedReason, s.want, s.reason)
				}
				h.record("ns/a", now, b, s.current, l.replicas)
			}
		})
	}
}

func TestTolerance(t *testing.T) {
	for ratio, want := range map[float64]bool{0.89: false, 0.9: true, 1.0: true, 1.1: true, 1.11: false} {
		if got := (tolerances{0.1, 0.1}).within(ratio); got != want {
			t.Errorf("within(%v) = %v", ratio, got)
		}
	}
	if (tolerances{0.5, 0}).within(1.01) || !(tolerances{0.5, 0}).within(0.6) {
		t.Error("scale-up and scale-down tolerances apply apart")
	}
}
