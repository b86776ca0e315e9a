package server

import (
	"context"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/nettools/ingress"
)

// ensureDefaultIngressClass creates the IngressClass "skiff" of the
// agents' built-in ingress controller, marked as the default class, unless
// it exists (an operator may have changed or replaced it; one deleted
// comes back at the next leadership change, as k3s's packaged manifests).
func (s *Server) ensureDefaultIngressClass(ctx context.Context) error {
	c := &networkingv1.IngressClass{
		TypeMeta: metav1.TypeMeta{APIVersion: networkingv1.SchemeGroupVersion.String(), Kind: "IngressClass"},
		ObjectMeta: metav1.ObjectMeta{Name: ingress.DefaultClassName, Generation: 1,
			Annotations: map[string]string{ingress.AnnotationDefaultClass: "true"}},
		Spec: networkingv1.IngressClassSpec{Controller: ingress.ControllerName},
	}
	created, err := s.createIfAbsent(ctx, state.Key{Resource: "networking.k8s.io/ingressclasses", Name: c.Name}, &c.ObjectMeta,
		metav1.NewTime(time.Now().UTC().Truncate(time.Second)), c)
	if created {
		s.log.Info("created the default IngressClass", "name", c.Name)
	}
	return err
}
