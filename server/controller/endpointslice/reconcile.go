package endpointslice

import (
	"context"
	"sort"

	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/server/controller"
)

// SliceHandler queues the Service (namespace/name) of every EndpointSlice
// managed by managedBy that is added, changed or deleted.
func SliceHandler(managedBy string, queue controller.Queue) cache.ResourceEventHandler {
	onSlice := func(obj any) {
		s, ok := controller.Unwrap[*discoveryv1.EndpointSlice](obj)
		if !ok || s.Labels[discoveryv1.LabelManagedBy] != managedBy {
			return
		}
		if name := s.Labels[discoveryv1.LabelServiceName]; name != "" {
			queue.Add(s.Namespace + "/" + name)
		}
	}
	return cache.ResourceEventHandlerFuncs{AddFunc: onSlice, UpdateFunc: func(_, obj any) { onSlice(obj) }, DeleteFunc: onSlice}
}

// Reconcile makes the existing slices of one Service (in namespace ns)
// the desired ones: existing slices are reused in name order (updated
// when their endpoints, ports, labels or annotations differ, replaced when
// their immutable addressType does), missing ones created, extra ones
// deleted.
func Reconcile(ctx context.Context, client kubernetes.Interface, ns string, existing, desired []*discoveryv1.EndpointSlice) error {
	slices := client.DiscoveryV1().EndpointSlices(ns)
	create := func(s *discoveryv1.EndpointSlice) error {
		_, err := slices.Create(ctx, s, metav1.CreateOptions{})
		if controller.IsNamespaceTerminating(err) {
			return nil
		}
		return err
	}
	remove := func(s *discoveryv1.EndpointSlice) error {
		err := slices.Delete(ctx, s.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &s.UID}})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	sort.Slice(existing, func(i, j int) bool { return existing[i].Name < existing[j].Name })
	for i, want := range desired {
		if i >= len(existing) {
			if err := create(want); err != nil {
				return err
			}
			continue
		}
		cur := existing[i]
		if cur.AddressType != want.AddressType {
			// addressType is immutable: replace the slice.
			if err := remove(cur); err != nil {
				return err
			}
			if err := create(want); err != nil {
				return err
			}
			continue
		}
		if apiequality.Semantic.DeepEqual(cur.Endpoints, want.Endpoints) && apiequality.Semantic.DeepEqual(cur.Ports, want.Ports) &&
			labels.Equals(cur.Labels, want.Labels) && apiequality.Semantic.DeepEqual(cur.Annotations, want.Annotations) {
			continue
		}
		out := cur.DeepCopy()
		out.Endpoints, out.Ports, out.Labels, out.Annotations = want.Endpoints, want.Ports, want.Labels, want.Annotations
		if _, err := slices.Update(ctx, out, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	for i := len(desired); i < len(existing); i++ {
		if err := remove(existing[i]); err != nil {
			return err
		}
	}
	return nil
}
