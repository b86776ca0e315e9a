package dns

import (
	"context"
	"testing"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
)

// TestInformerSource feeds the server from client-go informers (over
// client-go's fake clientset): objects present at start, then changes.
func TestInformerSource(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := fake.NewClientset(service("default", "web", "10.43.0.20"))
	factory := informers.NewSharedInformerFactory(cs, 0)
	src := NewInformerSource(factory)
	factory.Start(ctx.Done())
	t.Cleanup(factory.Shutdown)
	waitFor(t, src.Synced)
	ts := startServer(t, Config{Source: src})
	expect(t, ts.query("web.default.svc.cluster.local.", dns.TypeA), dns.RcodeSuccess, "A 10.43.0.20")

	if _, err := cs.CoreV1().Services("db").Create(ctx, service("db", "pg", corev1.ClusterIPNone), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sl := slice("db", "pg", "pg-1", nil, ep{ip: "10.42.0.5", hostname: "pg-0"})
	if _, err := cs.DiscoveryV1().EndpointSlices("db").Create(ctx, sl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(ts.query("pg-0.pg.db.svc.cluster.local.", dns.TypeA).Answer) == 1 })
	sl = sl.DeepCopy()
	sl.Endpoints[0].Conditions.Ready = ptr(false)
	if _, err := cs.DiscoveryV1().EndpointSlices("db").Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		return ts.query("pg-0.pg.db.svc.cluster.local.", dns.TypeA).Rcode == dns.RcodeNameError
	})
}
