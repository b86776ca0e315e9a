package admission

import (
	corev1 "k8s.io/api/core/v1"
)

// DefaultTolerationSeconds is how long pods stay on a not-ready or
// unreachable node before the node lifecycle controller evicts them.
const DefaultTolerationSeconds = int64(300)

// defaultTolerations adds NoExecute tolerations of 300 s for the
// not-ready and unreachable taints, unless the pod tolerates them already.
func defaultTolerations(a *Attributes) {
	p, ok := a.Object.(*corev1.Pod)
	if !ok {
		return
	}
	for _, key := range []string{corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable} {
		if tolerates(p.Spec.Tolerations, key) {
			continue
		}
		secs := DefaultTolerationSeconds
		p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{
			Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &secs,
		})
	}
}

func tolerates(ts []corev1.Toleration, key string) bool {
	for _, t := range ts {
		if (t.Key == key || (t.Key == "" && t.Operator == corev1.TolerationOpExists)) &&
			(t.Effect == corev1.TaintEffectNoExecute || t.Effect == "") {
			return true
		}
	}
	return false
}
