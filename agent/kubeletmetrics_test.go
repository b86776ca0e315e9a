package agent

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPodStartSLI: the SLI runs from the pod's creation to running, less
// the span of its image pulls; the start duration from first seen.
func TestPodStartSLI(t *testing.T) {
	tr := newPodStartTracker()
	created := time.Now().Add(-30 * time.Second)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "u1", CreationTimestamp: metav1.NewTime(created)}}
	tr.observe(pod)
	tr.pulled("u1", time.Now().Add(-20*time.Second)) // a 20 s pull
	pod = pod.DeepCopy()
	pod.Status.Phase = corev1.PodRunning
	tr.observe(pod)
	tr.observe(pod) // once only

	get := func(h interface{ Write(*dto.Metric) error }) *dto.Histogram {
		var m dto.Metric
		if err := h.Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.Histogram
	}
	sli := get(tr.sli)
	if sli.GetSampleCount() != 1 || sli.GetSampleSum() < 9 || sli.GetSampleSum() > 12 {
		t.Fatalf("SLI: %d samples, sum %v; want one of about 10 s", sli.GetSampleCount(), sli.GetSampleSum())
	}
	if h := get(tr.hist); h.GetSampleCount() != 1 || h.GetSampleSum() > 2 {
		t.Fatalf("start duration: %d samples, sum %v", h.GetSampleCount(), h.GetSampleSum())
	}
}
