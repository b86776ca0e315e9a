package podautoscaler

import (
	"math"
	"sync"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
)

// recommendation is one computed replica count and when it was made.
type recommendation struct {
	replicas int32
	at       time.Time
}

// scaleEvent is one change of the target's replicas the controller made.
type scaleEvent struct {
	change int32
	at     time.Time
}

// history is what the controller remembers of each HPA between syncs:
// its recent recommendations (stabilization windows) and rescales
// (scaling policies' periods). It lives on the leader only, as in
// kube-controller-manager: a new leader starts with none.
type history struct {
	mu     sync.Mutex
	recs   map[string][]recommendation
	ups    map[string][]scaleEvent
	downs  map[string][]scaleEvent
	stable time.Duration // --horizontal-pod-autoscaler-downscale-stabilization
}

func newHistory(downscaleStabilization time.Duration) *history {
	return &history{recs: map[string][]recommendation{}, ups: map[string][]scaleEvent{}, downs: map[string][]scaleEvent{},
		stable: downscaleStabilization}
}

func (h *history) forget(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.recs, key)
	delete(h.ups, key)
	delete(h.downs, key)
}

// limits is the outcome of normalizing a recommendation: the replica
// count and the reasons for the AbleToScale and ScalingLimited conditions.
type limits struct {
	replicas                     int32
	ableReason, ableMessage      string
	limitedReason, limitedMesage string
	limited                      bool
}

// normalize applies an HPA without behavior: the highest recommendation
// of the downscale stabilization window, then min and max and the
// default scale-up rate (double, at least 4).
func (h *history) normalize(key string, now time.Time, current, desired, minR, maxR int32) limits {
	h.mu.Lock()
	defer h.mu.Unlock()
	stabilized := desired
	cutoff := now.Add(-h.stable)
	recs := h.recs[key]
	replaced := false
	for i, r := range recs {
		if r.at.After(cutoff) {
			stabilized = max(stabilized, r.replicas)
		} else if !replaced {
			recs[i], replaced = recommendation{desired, now}, true
		}
	}
	if !replaced {
		recs = append(recs, recommendation{desired, now})
	}
	h.recs[key] = recs
	out := limits{replicas: stabilized, ableReason: "ReadyForNewScale", ableMessage: "recommended size matches current size"}
	if stabilized != desired {
		out.ableReason, out.ableMessage = "ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation"
	}
	upLimit := max(2*current, 4)
	maxAllowed, reason, msg := maxR, "TooManyReplicas", "the desired replica count is more than the maximum replica count"
	if upLimit < maxR {
		maxAllowed, reason, msg = upLimit, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"
	}
	switch {
	case out.replicas < minR:
		out.replicas, out.limited = minR, true
		out.limitedReason, out.limitedMesage = "TooFewReplicas", "the desired replica count is less than the minimum replica count"
	case out.replicas > maxAllowed:
		out.replicas, out.limited = maxAllowed, true
		out.limitedReason, out.limitedMesage = reason, msg
	default:
		out.limitedReason, out.limitedMesage = "DesiredWithinRange", "the desired count is within the acceptable range"
	}
	return out
}

// normalizeWithBehavior applies an HPA's behavior: the stabilization
// windows of scale up (lowest recent recommendation) and scale down
// (highest), then the policies' rate limits and min and max.
func (h *history) normalizeWithBehavior(key string, now time.Time, b *autoscalingv2.HorizontalPodAutoscalerBehavior, current, desired, minR, maxR int32) limits {
	h.mu.Lock()
	defer h.mu.Unlock()
	up, down := b.ScaleUp, b.ScaleDown
	upWindow, downWindow := windowOf(up, 0), windowOf(down, h.stable)
	upRec, downRec := desired, desired
	longest := max(upWindow, downWindow)
	recs := h.recs[key]
	replaced := false
	for i, r := range recs {
		if r.at.After(now.Add(-upWindow)) {
			upRec = min(upRec, r.replicas)
		}
		if r.at.After(now.Add(-downWindow)) {
			downRec = max(downRec, r.replicas)
		}
		if !replaced && !r.at.After(now.Add(-longest)) {
			recs[i], replaced = recommendation{desired, now}, true
		}
	}
	if !replaced {
		recs = append(recs, recommendation{desired, now})
	}
	h.recs[key] = recs
	stabilized := current
	if stabilized < upRec {
		stabilized = upRec
	}
	if stabilized > downRec {
		stabilized = downRec
	}
	out := limits{replicas: stabilized, ableReason: "ReadyForNewScale", ableMessage: "recommended size matches current size"}
	if stabilized != desired {
		if desired > current {
			out.ableReason, out.ableMessage = "ScaleUpStabilized", "recent recommendations were lower than current one, applying the lowest recent recommendation"
		} else {
			out.ableReason, out.ableMessage = "ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation"
		}
	}
	out.limitedReason, out.limitedMesage = "DesiredWithinRange", "the desired count is within the acceptable range"
	switch {
	case stabilized > current:
		limit := max(scaleUpLimit(current, h.ups[key], h.downs[key], up, now), current)
		maxAllowed, reason, msg := maxR, "TooManyReplicas", "the desired replica count is more than the maximum replica count"
		if maxAllowed > limit {
			maxAllowed, reason, msg = limit, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"
		}
		if stabilized > maxAllowed {
			out.replicas, out.limited, out.limitedReason, out.limitedMesage = maxAllowed, true, reason, msg
		}
	case stabilized < current:
		limit := min(scaleDownLimit(current, h.ups[key], h.downs[key], down, now), current)
		minAllowed, reason, msg := minR, "TooFewReplicas", "the desired replica count is less than the minimum replica count"
		if minAllowed < limit {
			minAllowed, reason, msg = limit, "ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate"
		}
		if stabilized < minAllowed {
			out.replicas, out.limited, out.limitedReason, out.limitedMesage = minAllowed, true, reason, msg
		}
	}
	return out
}

// windowOf is a rule's stabilization window (def when unset).
func windowOf(r *autoscalingv2.HPAScalingRules, def time.Duration) time.Duration {
	if r == nil || r.StabilizationWindowSeconds == nil {
		return def
	}
	return time.Duration(*r.StabilizationWindowSeconds) * time.Second
}

// record remembers a rescale from prev to next for the policies' periods,
// forgetting events older than the longest period of the HPA's rules.
func (h *history) record(key string, now time.Time, b *autoscalingv2.HorizontalPodAutoscalerBehavior, prev, next int32) {
	if b == nil || prev == next {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	keep := func(events []scaleEvent, r *autoscalingv2.HPAScalingRules) []scaleEvent {
		var longest int32
		if r != nil {
			for _, p := range r.Policies {
				longest = max(longest, p.PeriodSeconds)
			}
		}
		out := events[:0]
		for _, e := range events {
			if e.at.After(now.Add(-time.Duration(longest) * time.Second)) {
				out = append(out, e)
			}
		}
		return out
	}
	if next > prev {
		h.ups[key] = append(keep(h.ups[key], b.ScaleUp), scaleEvent{next - prev, now})
	} else {
		h.downs[key] = append(keep(h.downs[key], b.ScaleDown), scaleEvent{prev - next, now})
	}
}

// changeIn sums the changes of events in the last period seconds.
func changeIn(events []scaleEvent, period int32, now time.Time) int32 {
	var sum int32
	for _, e := range events {
		if e.at.After(now.Add(-time.Duration(period) * time.Second)) {
			sum += e.change
		}
	}
	return sum
}

// scaleUpLimit is the most replicas the scale-up policies allow now:
// per policy, from the replicas at the start of its period, and the
// policies' results combined by selectPolicy (Max by default).
func scaleUpLimit(current int32, ups, downs []scaleEvent, r *autoscalingv2.HPAScalingRules, now time.Time) int32 {
	if r == nil {
		return math.MaxInt32
	}
	sel := autoscalingv2.MaxChangePolicySelect
	if r.SelectPolicy != nil {
		sel = *r.SelectPolicy
	}
	if sel == autoscalingv2.DisabledPolicySelect {
		return current
	}
	result, pick := int32(math.MinInt32), func(a, b int32) int32 { return max(a, b) }
	if sel == autoscalingv2.MinChangePolicySelect {
		result, pick = math.MaxInt32, func(a, b int32) int32 { return min(a, b) }
	}
	for _, p := range r.Policies {
		start := current - changeIn(ups, p.PeriodSeconds, now) + changeIn(downs, p.PeriodSeconds, now)
		var proposed int32
		if p.Type == autoscalingv2.PodsScalingPolicy {
			proposed = start + p.Value
		} else {
			proposed = int32(math.Ceil(float64(start) * (1 + float64(p.Value)/100)))
		}
		result = pick(result, proposed)
	}
	return result
}

// scaleDownLimit is the fewest replicas the scale-down policies allow now.
func scaleDownLimit(current int32, ups, downs []scaleEvent, r *autoscalingv2.HPAScalingRules, now time.Time) int32 {
	if r == nil {
		return math.MinInt32
	}
	sel := autoscalingv2.MaxChangePolicySelect
	if r.SelectPolicy != nil {
		sel = *r.SelectPolicy
	}
	if sel == autoscalingv2.DisabledPolicySelect {
		return current
	}
	// The biggest change is the fewest replicas.
	result, pick := int32(math.MaxInt32), func(a, b int32) int32 { return min(a, b) }
	if sel == autoscalingv2.MinChangePolicySelect {
		result, pick = math.MinInt32, func(a, b int32) int32 { return max(a, b) }
	}
	for _, p := range r.Policies {
		start := current + changeIn(downs, p.PeriodSeconds, now) - changeIn(ups, p.PeriodSeconds, now)
		var proposed int32
		if p.Type == autoscalingv2.PodsScalingPolicy {
			proposed = start - p.Value
		} else {
			proposed = int32(float64(start) * (1 - float64(p.Value)/100))
		}
		result = pick(result, proposed)
	}
	return result
}
