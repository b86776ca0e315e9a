package apiserver_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

// TestRequestMetrics: requests are counted with kube-apiserver's names and
// labels (LIST for a collection GET, scope), watch events are counted, and
// no label carries a name or namespace, nor a resource the server does not
// serve.
func TestRequestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, apiservertest.Options{Registerer: reg})
	srv, cs, ctx := e.srv, e.cs, e.ctx
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "secret-name-xyz", Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	w, err := cs.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if ev := <-w.ResultChan(); ev.Type != watch.Added {
		t.Fatalf("watch event %v", ev.Type)
	}
	w.Stop()
	if _, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("default").Get(ctx, "secret-name-xyz", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	// A resource the server does not serve: 404, and no label of it.
	req, _ := http.NewRequest(http.MethodGet, srv.HTTP.URL+"/api/v1/namespaces/default/madeupthings-abc", nil)
	req.Header.Set("Authorization", "Bearer "+apiservertest.Token)
	resp, err := srv.HTTP.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	fams := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		fams[mf.GetName()] = mf
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				if l.GetName() == "name" || l.GetName() == "namespace" || strings.Contains(l.GetValue(), "secret-name") ||
					strings.Contains(l.GetValue(), "madeup") || l.GetValue() == "default" {
					t.Errorf("%s has label %s=%q", mf.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
	count := func(name string, want map[string]string) float64 {
		t.Helper()
		var sum float64
		mf := fams[name]
		if mf == nil {
			t.Fatalf("no %s", name)
		}
	next:
		for _, m := range mf.Metric {
			got := map[string]string{}
			for _, l := range m.Label {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
		return sum
	}
	for _, c := range []struct {
		name string
		want map[string]string
	}{
		{"apiserver_request_total", map[string]string{"verb": "LIST", "resource": "pods", "version": "v1", "group": "", "scope": "namespace", "code": "200", "component": "apiserver"}},
		{"apiserver_request_total", map[string]string{"verb": "GET", "resource": "pods", "scope": "resource", "code": "200"}},
		{"apiserver_request_total", map[string]string{"verb": "POST", "resource": "pods", "code": "201"}},
		{"apiserver_request_total", map[string]string{"verb": "WATCH", "resource": "pods"}},
		{"apiserver_request_total", map[string]string{"verb": "LIST", "resource": "", "code": "404"}},
		{"apiserver_request_duration_seconds", map[string]string{"verb": "LIST", "resource": "pods"}},
		{"apiserver_response_sizes", map[string]string{"verb": "GET", "resource": "pods"}},
		{"apiserver_watch_events_total", map[string]string{"resource": "pods", "version": "v1"}},
		{"apiserver_storage_objects", map[string]string{"resource": "pods"}},
		{"apiserver_storage_objects", map[string]string{"resource": "namespaces"}},
	} {
		if n := count(c.name, c.want); n < 1 {
			t.Errorf("%s%v = %v", c.name, c.want, n)
		}
	}
	if n := count("apiserver_longrunning_requests", map[string]string{"verb": "WATCH"}); n != 0 {
		t.Errorf("a watch still counted as running after it ended: %v", n)
	}
}
