package endpointslicemirroring_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/controller/controllertest"
	"github.com/skiff-io/skiff/server/controller/endpoints"
	"github.com/skiff-io/skiff/server/controller/endpointslice"
	"github.com/skiff-io/skiff/server/controller/endpointslicemirroring"
)

// The Endpoints a user writes for a Service without a selector are
// mirrored to an EndpointSlice through create, update and delete
// (conformance "EndpointSliceMirroring should mirror a custom Endpoints
// resource through create update and delete").
func TestMirrorCustomEndpoints(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{})
	ep := endpoints.New(e.CC)
	sl := endpointslice.New(e.CC)
	m := endpointslicemirroring.New(e.CC)
	e.Start(func(ctx context.Context) { ep.Run(ctx, 1) }, func(ctx context.Context) { sl.Run(ctx, 1) },
		func(ctx context.Context) { m.Run(ctx, 1) })

	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "custom"}, Spec: corev1.ServiceSpec{
		Ports: []corev1.ServicePort{{Name: "example", Port: 80, Protocol: corev1.ProtocolTCP}},
	}}
	if _, err := e.Client.CoreV1().Services("default").Create(e.Ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eps := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "custom", Labels: map[string]string{"team": "a"}},
		Subsets: []corev1.EndpointSubset{{
			Ports:             []corev1.EndpointPort{{Port: 80}},
			Addresses:         []corev1.EndpointAddress{{IP: "10.1.2.3"}},
			NotReadyAddresses: []corev1.EndpointAddress{{IP: "10.1.2.4"}},
		}}}
	if _, err := e.Client.CoreV1().Endpoints("default").Create(e.Ctx, eps, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	slicesWith := func(want map[string]bool) func() error {
		return func() error {
			l, err := e.Client.DiscoveryV1().EndpointSlices("default").List(e.Ctx,
				metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=custom"})
			if err != nil {
				return err
			}
			if len(l.Items) != 1 {
				return controllertest.Errorf("%d slices, want 1", len(l.Items))
			}
			s := l.Items[0]
			if s.Labels[discoveryv1.LabelManagedBy] != endpointslicemirroring.ManagedBy || s.Labels["team"] != "a" ||
				len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Kind != "Endpoints" {
				return controllertest.Errorf("slice meta %+v", s.ObjectMeta)
			}
			if len(s.Ports) != 1 || *s.Ports[0].Port != 80 || *s.Ports[0].Protocol != corev1.ProtocolTCP {
				return controllertest.Errorf("ports %+v", s.Ports)
			}
			got := map[string]bool{}
			for _, ep := range s.Endpoints {
				got[ep.Addresses[0]] = *ep.Conditions.Ready
			}
			if len(got) != len(want) {
				return controllertest.Errorf("endpoints %v, want %v", got, want)
			}
			for ip, ready := range want {
				if r, ok := got[ip]; !ok || r != ready {
					return controllertest.Errorf("endpoints %v, want %v", got, want)
				}
			}
			return nil
		}
	}
	e.WaitFor(10*time.Second, "mirrored slice", slicesWith(map[string]bool{"10.1.2.3": true, "10.1.2.4": false}))

	eps.Subsets = []corev1.EndpointSubset{{Ports: []corev1.EndpointPort{{Port: 80}}, Addresses: []corev1.EndpointAddress{{IP: "10.2.3.4"}}}}
	if _, err := e.Client.CoreV1().Endpoints("default").Update(e.Ctx, eps, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(10*time.Second, "updated slice", slicesWith(map[string]bool{"10.2.3.4": true}))

	if err := e.Client.CoreV1().Endpoints("default").Delete(e.Ctx, "custom", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(10*time.Second, "slices removed", func() error {
		l, err := e.Client.DiscoveryV1().EndpointSlices("default").List(e.Ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(l.Items) != 0 {
			return controllertest.Errorf("%d slices", len(l.Items))
		}
		return nil
	})
}

// Subsets with the same ports share a slice per address family; a
// repeated address is one endpoint; an address that is no IP is left out.
func TestDesiredGroupsByFamily(t *testing.T) {
	ep := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "d"},
		Subsets: []corev1.EndpointSubset{
			{Ports: []corev1.EndpointPort{{Name: "a", Port: 1}}, Addresses: []corev1.EndpointAddress{{IP: "10.0.0.1"}, {IP: "fd00::1"}, {IP: "bogus"}}},
			{Ports: []corev1.EndpointPort{{Name: "a", Port: 1}}, Addresses: []corev1.EndpointAddress{{IP: "10.0.0.1"}, {IP: "10.0.0.2"}}},
		}}
	got := endpointslicemirroring.Desired(ep)
	if len(got) != 2 || got[0].AddressType != discoveryv1.AddressTypeIPv4 || len(got[0].Endpoints) != 2 ||
		got[1].AddressType != discoveryv1.AddressTypeIPv6 || len(got[1].Endpoints) != 1 {
		t.Fatalf("desired: %+v", got)
	}
}
