package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// TestKubernetesServiceAndAllocation: with three masters, the `kubernetes`
// Service lists every master as a ready endpoint, and a stopped master
// becomes not ready; Services created concurrently through all three
// masters get distinct cluster IPs and node ports.
func TestKubernetesServiceAndAllocation(t *testing.T) {
	c := testutil.StartCluster(t, 3)
	ctx := context.Background()
	cs := c.Masters[0].Clientset()
	want := func(ready, notReady []string) error {
		ep, err := cs.CoreV1().Endpoints("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			return err
		}
		var r, n []string
		for _, ss := range ep.Subsets {
			for _, a := range ss.Addresses {
				r = append(r, a.IP)
			}
			for _, a := range ss.NotReadyAddresses {
				n = append(n, a.IP)
			}
		}
		sort.Strings(r)
		sort.Strings(n)
		sort.Strings(ready)
		sort.Strings(notReady)
		if strings.Join(r, ",") != strings.Join(ready, ",") || strings.Join(n, ",") != strings.Join(notReady, ",") {
			return fmt.Errorf("ready %v not ready %v; want %v and %v", r, n, ready, notReady)
		}
		return nil
	}
	ips := []string{c.Masters[0].IP, c.Masters[1].IP, c.Masters[2].IP}
	testutil.WaitFor(t, 30*time.Second, "kubernetes endpoints list the 3 masters", func() error { return want(ips, nil) })
	svc, err := cs.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil || svc.Spec.ClusterIP != "10.43.0.1" || svc.Spec.Ports[0].Port != 443 {
		t.Fatalf("kubernetes Service: %+v %v", svc, err)
	}

	// Concurrent creates through every master.
	var wg sync.WaitGroup
	var mu sync.Mutex
	seenIP, seenPort := map[string]string{}, map[int32]string{}
	var errs []error
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			m := c.Masters[i%3]
			s, err := m.Clientset().CoreV1().Services("default").Create(ctx, &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("s%d", i)},
				Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "x"},
					Ports: []corev1.ServicePort{{Port: 80}}},
			}, metav1.CreateOptions{})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			if o, dup := seenIP[s.Spec.ClusterIP]; dup {
				errs = append(errs, fmt.Errorf("%s and %s share cluster IP %s", o, s.Name, s.Spec.ClusterIP))
			}
			if o, dup := seenPort[s.Spec.Ports[0].NodePort]; dup {
				errs = append(errs, fmt.Errorf("%s and %s share node port %d", o, s.Name, s.Spec.Ports[0].NodePort))
			}
			seenIP[s.Spec.ClusterIP], seenPort[s.Spec.Ports[0].NodePort] = s.Name, s.Name
		}(i)
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("concurrent creates: %v", errs)
	}

	// A master that stops becomes a not-ready endpoint.
	victim := c.Masters[2]
	if victim == c.Leader(30*time.Second) {
		victim = c.Masters[1]
	}
	victim.Stop()
	var rest []string
	for _, m := range c.Masters {
		if m != victim {
			rest = append(rest, m.IP)
		}
	}
	testutil.WaitFor(t, 30*time.Second, "stopped master not ready", func() error { return want(rest, []string{victim.IP}) })
}
