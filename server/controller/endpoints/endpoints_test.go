package endpoints_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiff-io/skiff/server/controller/controllertest"
	"github.com/skiff-io/skiff/server/controller/endpoints"
	"github.com/skiff-io/skiff/server/controller/endpointslice"
	"github.com/skiff-io/skiff/server/controller/garbagecollector"
)

func TestEndpointsAndSlices(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{})
	e.RunKubelet("n1")
	ep := endpoints.New(e.CC)
	sl := endpointslice.New(e.CC)
	gc := garbagecollector.New(e.CC)
	e.Start(func(ctx context.Context) { ep.Run(ctx, 1) }, func(ctx context.Context) { sl.Run(ctx, 1) }, func(ctx context.Context) { gc.Run(ctx, 1) })

	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "web"},
		Ports:    []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("web")}},
	}}
	if _, err := e.Client.CoreV1().Services("default").Create(e.Ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mk := func(name string, port int32, notReady bool) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i", Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: port, Protocol: corev1.ProtocolTCP}}}}}}
		if notReady {
			p.Annotations = map[string]string{controllertest.AnnotationNotReady: "1"}
		}
		if _, err := e.Client.CoreV1().Pods("default").Create(e.Ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mk("a", 8080, false)
	mk("b", 9090, false) // the same named port on another number: another subset
	mk("c", 8080, true)
	e.WaitFor(10*time.Second, "endpoints", func() error {
		ep, err := e.Client.CoreV1().Endpoints("default").Get(e.Ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		ready, notReady, ports := 0, 0, map[int32]bool{}
		for _, s := range ep.Subsets {
			ready += len(s.Addresses)
			notReady += len(s.NotReadyAddresses)
			for _, p := range s.Ports {
				ports[p.Port] = true
			}
		}
		if len(ep.Subsets) != 2 || ready != 2 || notReady != 1 || !ports[8080] || !ports[9090] {
			c, _ := e.Client.CoreV1().Pods("default").Get(e.Ctx, "c", metav1.GetOptions{})
			return controllertest.Errorf("subsets %+v; pod c %+v", ep.Subsets, c.Status)
		}
		return nil
	})
	e.WaitFor(10*time.Second, "endpoint slices", func() error {
		l, err := e.Client.DiscoveryV1().EndpointSlices("default").List(e.Ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=web"})
		if err != nil {
			return err
		}
		total, ready := 0, 0
		for _, s := range l.Items {
			if s.Labels[discoveryv1.LabelManagedBy] != endpointslice.ManagedBy || metav1.GetControllerOf(&s) == nil {
				return controllertest.Errorf("slice meta %+v", s.ObjectMeta)
			}
			for _, ep := range s.Endpoints {
				total++
				if *ep.Conditions.Ready {
					ready++
				}
			}
		}
		if len(l.Items) != 2 || total != 3 || ready != 2 {
			return controllertest.Errorf("%d slices, %d endpoints, %d ready", len(l.Items), total, ready)
		}
		return nil
	})
	// Deleting the service removes its endpoints and (through the garbage
	// collector) its slices.
	if err := e.Client.CoreV1().Services("default").Delete(e.Ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(10*time.Second, "endpoints removed", func() error {
		if _, err := e.Client.CoreV1().Endpoints("default").Get(e.Ctx, "web", metav1.GetOptions{}); err == nil {
			return controllertest.Errorf("endpoints still there")
		}
		l, _ := e.Client.DiscoveryV1().EndpointSlices("default").List(e.Ctx, metav1.ListOptions{})
		if len(l.Items) != 0 {
			return controllertest.Errorf("%d slices", len(l.Items))
		}
		return nil
	})
}

// A Service that selects no pods gets one placeholder slice with no
// endpoints and no ports, as kube-controller-manager's reconciler makes.
func TestPlaceholderSliceHasNoPorts(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{})
	sl := endpointslice.New(e.CC)
	e.Start(func(ctx context.Context) { sl.Run(ctx, 1) })
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "empty"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "none"},
		Ports:    []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}},
	}}
	if _, err := e.Client.CoreV1().Services("default").Create(e.Ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(10*time.Second, "placeholder slice", func() error {
		l, err := e.Client.DiscoveryV1().EndpointSlices("default").List(e.Ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=empty"})
		if err != nil {
			return err
		}
		if len(l.Items) != 1 || len(l.Items[0].Endpoints) != 0 || l.Items[0].Ports != nil {
			return controllertest.Errorf("slices %+v", l.Items)
		}
		return nil
	})
}
