package agent

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/runtime/fake"
)

// degradedRuntime is the fake runtime on a host that withholds features.
type degradedRuntime struct {
	*fake.FakeRuntime
	d []string
}

func (r degradedRuntime) Degradations() []string { return r.d }

// TestRuntimeDegradationReported: when the runtime runs containers
// degraded, the Node carries the RuntimeDegraded condition on every status
// update and gets one Warning event.
func TestRuntimeDegradationReported(t *testing.T) {
	limits := []string{"no CAP_SYS_RESOURCE: container oom_score_adj is raised to at least the agent's 0"}
	h := newHarness(t, func(c *Config) { c.Runtime = degradedRuntime{c.Runtime.(*fake.FakeRuntime), limits} })
	ctx := context.Background()
	h.waitFor("RuntimeDegraded condition", func() error {
		n, err := h.cs.CoreV1().Nodes().Get(ctx, testNode, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == NodeRuntimeDegraded {
				if c.Status != corev1.ConditionTrue || c.Reason != "HostLimitsContainers" || !strings.Contains(c.Message, limits[0]) {
					t.Fatalf("condition %+v", c)
				}
				return nil
			}
		}
		return fmt.Errorf("conditions %+v", n.Status.Conditions)
	})
	// The agent goes on (its Lease renewed twice more); still one event.
	renewals, last := 0, ""
	h.waitFor("two lease renewals", func() error {
		l, err := h.cs.CoordinationV1().Leases("kube-node-lease").Get(ctx, testNode, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if rt := l.Spec.RenewTime.String(); rt != last {
			renewals, last = renewals+1, rt
		}
		if renewals < 3 {
			return fmt.Errorf("%d renewals", renewals)
		}
		return nil
	})
	evs, err := h.cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs.Items {
		if e.Reason == "HostLimitsContainers" {
			n++
			if e.Type != corev1.EventTypeWarning || e.InvolvedObject.Kind != "Node" || e.InvolvedObject.Name != testNode || !strings.Contains(e.Message, limits[0]) {
				t.Errorf("event %+v", e)
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d HostLimitsContainers events, want 1", n)
	}
}
