package admission

import (
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/skiff-io/skiff/fsm/state"
)

// annotationIngressClass is the class annotation of Ingresses before
// spec.ingressClassName.
const annotationIngressClass = "kubernetes.io/ingress.class"

// defaultIngressClass is kube-apiserver's DefaultIngressClass plugin: a
// new Ingress that names no class (neither spec.ingressClassName nor the
// old kubernetes.io/ingress.class annotation) gets the IngressClass
// annotated ingressclass.kubernetes.io/is-default-class: "true" (the
// newest one when several are).
func (c *Chain) defaultIngressClass(snap *state.Snapshot, a *Attributes) error {
	in, ok := a.Object.(*networkingv1.Ingress)
	if !ok || a.Operation != Create || in.Spec.IngressClassName != nil || in.Annotations[annotationIngressClass] != "" {
		return nil
	}
	kind, ok := c.reg.Lookup(networkingv1.GroupName, "v1", "ingressclasses")
	if !ok {
		return nil
	}
	var (
		def  *networkingv1.IngressClass
		derr error
	)
	snap.List(kind.StorageResource(), "", "", func(o *state.Object) bool {
		obj, err := kind.Decode(o)
		if err != nil {
			derr = err
			return false
		}
		ic := obj.(*networkingv1.IngressClass)
		if ic.Annotations[networkingv1.AnnotationIsDefaultIngressClass] == "true" &&
			(def == nil || def.CreationTimestamp.Before(&ic.CreationTimestamp)) {
			def = ic
		}
		return true
	})
	if derr != nil {
		return apierrors.NewInternalError(derr)
	}
	if def != nil {
		name := def.Name
		in.Spec.IngressClassName = &name
	}
	return nil
}
