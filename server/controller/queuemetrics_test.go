package controller

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestQueueMetrics: a queue reports workqueue_* under its name; its depth
// leaves the sum when it shuts down (a new leader's queue of the same name
// starts from its own).
func TestQueueMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(QueueMetrics())
	q := NewQueue("test-metrics-controller", 0)
	q.Add("default/a")
	q.Add("default/b")
	key, _ := q.Get()
	q.Done(key)
	q.AddRateLimited("default/c")
	want := `
# HELP workqueue_depth Current depth of workqueue
# TYPE workqueue_depth gauge
workqueue_depth{name="test-metrics-controller"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "workqueue_depth"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(queueMetrics.adds.WithLabelValues("test-metrics-controller")); n != 2 {
		t.Fatalf("adds %v, want 2", n)
	}
	if n := testutil.ToFloat64(queueMetrics.retries.WithLabelValues("test-metrics-controller")); n != 1 {
		t.Fatalf("retries %v, want 1", n)
	}
	q.ShutDown()
	if n, err := testutil.GatherAndCount(reg, "workqueue_depth"); err != nil || n != 0 {
		t.Fatalf("depth series after shutdown: %d %v", n, err)
	}
}
