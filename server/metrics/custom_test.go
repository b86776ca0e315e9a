package metrics

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	k8slabels "k8s.io/apimachinery/pkg/labels"
)

// custom.metrics.k8s.io and external.metrics.k8s.io over the store: a pods
// gauge summed per pod, a counter rated, an object's metric by its kind's
// label, an external rule with the request's selector injected into every
// series selector and $namespace replaced, the bare series without a rule.
func TestCustomMetrics(t *testing.T) {
	store := openTestStore(t, t.TempDir(), StoreOptions{})
	defer store.Close()
	now := time.Now().Truncate(time.Second)
	l := func(kv ...string) labels.Labels { return labels.FromStrings(kv...) }
	start := now.Add(-20 * time.Second)
	appendSamples(t, store, l("__name__", "inflight", "namespace", "default", "pod", "web-1", "path", "a"), start, 10*time.Second, 1, 2, 3)
	appendSamples(t, store, l("__name__", "inflight", "namespace", "default", "pod", "web-1", "path", "b"), start, 10*time.Second, 1, 1, 1)
	appendSamples(t, store, l("__name__", "inflight", "namespace", "default", "pod", "web-2", "path", "a"), start, 10*time.Second, 7, 7, 7)
	appendSamples(t, store, l("__name__", "inflight", "namespace", "other", "pod", "web-1", "path", "a"), start, 10*time.Second, 100, 100, 100)
	appendSamples(t, store, l("__name__", "requests_total", "namespace", "default", "pod", "web-1"), start, 10*time.Second, 0, 50, 100)
	appendSamples(t, store, l("__name__", "requests_total", "namespace", "default", "service", "web"), start, 10*time.Second, 0, 100, 200)
	appendSamples(t, store, l("__name__", "queue_messages", "queue", "jobs", "namespace", "default"), start, 10*time.Second, 40, 42, 45)
	appendSamples(t, store, l("__name__", "queue_messages", "queue", "mail", "namespace", "default"), start, 10*time.Second, 5, 5, 5)
	appendSamples(t, store, l("__name__", "queue_messages", "queue", "jobs", "namespace", "other"), start, 10*time.Second, 1000, 1000, 1000)
	cm := NewCustomMetrics(NewAPI(store, APIOptions{}), 10*time.Second)
	ctx := context.Background()

	vals, err := cm.PodValues(ctx, "default", []string{"web-1", "web-2", "web-3"}, "inflight", "", k8slabels.Everything())
	if err != nil {
		t.Fatal(err)
	}
	if len(vals) != 2 || vals["web-1"].Value != 4 || vals["web-2"].Value != 7 {
		t.Fatalf("pods gauge: %+v", vals)
	}
	sel, _ := k8slabels.Parse("path=a")
	if vals, err = cm.PodValues(ctx, "default", []string{"web-1"}, "inflight", "", sel); err != nil || vals["web-1"].Value != 3 {
		t.Fatalf("pods gauge with a metric selector: %+v %v", vals, err)
	}
	if vals, err = cm.PodValues(ctx, "default", []string{"web-1"}, "requests_total", "", nil); err != nil || vals["web-1"].Value != 5 {
		t.Fatalf("pods counter (5/s): %+v %v", vals, err)
	}
	if v, err := cm.ObjectValue(ctx, "default", "Service", "web", "requests_total", nil); err != nil || v == nil || v.Value != 10 {
		t.Fatalf("service counter (10/s): %+v %v", v, err)
	}
	if v, err := cm.ObjectValue(ctx, "default", "Service", "nope", "requests_total", nil); err != nil || v != nil {
		t.Fatalf("missing object: %+v %v", v, err)
	}
	if _, err := cm.PodValues(ctx, "default", []string{"p"}, `up or vector(1)`, "", nil); err == nil {
		t.Fatal("a metric name that is an expression must be refused")
	}

	// A pods rule: its series restricted to the namespace and pods.
	if vals, err = cm.PodValues(ctx, "default", []string{"web-1", "web-2"}, "load", `inflight{path="a"} * 10`, nil); err != nil ||
		len(vals) != 2 || vals["web-1"].Value != 30 || vals["web-2"].Value != 70 {
		t.Fatalf("pods rule: %+v %v", vals, err)
	}
	if _, err := cm.PodValues(ctx, "default", []string{"web-1"}, "load", `inflight{`, nil); err == nil {
		t.Fatal("a malformed pods rule must fail")
	}

	rule := `sum by (queue) (queue_messages{namespace="$namespace"}) * 2`
	ext, err := cm.ExternalValues(ctx, "default", "depth", rule, k8slabels.Everything())
	if err != nil || len(ext) != 2 {
		t.Fatalf("external rule: %+v %v", ext, err)
	}
	sel, _ = k8slabels.Parse("queue in (jobs)")
	if ext, err = cm.ExternalValues(ctx, "default", "depth", rule, sel); err != nil || len(ext) != 1 || ext[0].Value != 90 || ext[0].Labels["queue"] != "jobs" {
		t.Fatalf("external rule with a selector: %+v %v", ext, err)
	}
	sel, _ = k8slabels.Parse("namespace=other")
	if ext, err = cm.ExternalValues(ctx, "x", "queue_messages", "", sel); err != nil || len(ext) != 1 || ext[0].Value != 1000 {
		t.Fatalf("external series without a rule: %+v %v", ext, err)
	}
	if _, err := cm.ExternalValues(ctx, "default", "bad", "sum(", nil); err == nil {
		t.Fatal("a malformed rule must fail")
	}
	if _, err := cm.ExternalValues(ctx, "default", "not a name", "", nil); err == nil {
		t.Fatal("no rule and no series name must fail")
	}

	for in, want := range map[string]string{
		"a=b,c!=d":      `[a="b" c!="d"]`,
		"a in (x,y)":    `[a=~"x|y"]`,
		"!a":            `[a=""]`,
		"a":             `[a!=""]`,
		"a notin (x.y)": `[a!~"x\\.y"]`,
	} {
		sel, err := k8slabels.Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		ms, err := Matchers(sel)
		if err != nil {
			t.Fatal(err)
		}
		got := "["
		for i, m := range ms {
			if i > 0 {
				got += " "
			}
			got += m.String()
		}
		if got += "]"; in != "a in (x,y)" && got != want {
			t.Errorf("Matchers(%q) = %s, want %s", in, got, want)
		}
		if in == "a in (x,y)" && got != want && got != `[a=~"y|x"]` {
			t.Errorf("Matchers(%q) = %s", in, got)
		}
	}
}
