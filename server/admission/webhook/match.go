package webhook

import (
	"fmt"
	"slices"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-io/skiff/fsm/state"
)

// matches reports whether a webhook with these rules and selectors is
// called for a.
func (d *Dispatcher) matches(snap *state.Snapshot, a *Attributes, rules []admissionregistrationv1.RuleWithOperations, nsSel, objSel *metav1.LabelSelector) (bool, error) {
	if !slices.ContainsFunc(rules, func(r admissionregistrationv1.RuleWithOperations) bool { return ruleMatches(r, a) }) {
		return false, nil
	}
	ok, err := d.namespaceMatches(snap, a, nsSel)
	if err != nil || !ok {
		return false, err
	}
	return objectMatches(a, objSel)
}

// ruleMatches is kube-apiserver's rule matcher: operations, groups and
// versions by value or "*"; resources as "pods", "pods/status", "pods/*",
// "*/status", "*" (every resource, no subresource) or "*/*"; scope.
func ruleMatches(r admissionregistrationv1.RuleWithOperations, a *Attributes) bool {
	if !slices.Contains(r.Operations, admissionregistrationv1.OperationAll) && !slices.Contains(r.Operations, a.Operation) {
		return false
	}
	gvk := a.Kind.GVK
	if !slices.Contains(r.APIGroups, "*") && !slices.Contains(r.APIGroups, gvk.Group) {
		return false
	}
	if !slices.Contains(r.APIVersions, "*") && !slices.Contains(r.APIVersions, gvk.Version) {
		return false
	}
	if !resourceMatches(r.Resources, a.Kind.Resource, a.Subresource) {
		return false
	}
	if r.Scope == nil {
		return true
	}
	switch *r.Scope {
	case admissionregistrationv1.ClusterScope:
		return !a.Kind.Namespaced
	case admissionregistrationv1.NamespacedScope:
		return a.Kind.Namespaced
	}
	return true
}

func resourceMatches(list []string, res, sub string) bool {
	for _, r := range list {
		switch {
		case r == "*/*":
			return true
		case sub == "" && (r == "*" || r == res):
			return true
		case sub != "" && (r == res+"/"+sub || r == res+"/*" || r == "*/"+sub):
			return true
		}
	}
	return false
}

// namespaceMatches matches the namespace's labels (the Namespace's own for
// a request on a Namespace); cluster-scoped objects always match.
func (d *Dispatcher) namespaceMatches(snap *state.Snapshot, a *Attributes, sel *metav1.LabelSelector) (bool, error) {
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		return true, nil
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false, apierrors.NewInternalError(fmt.Errorf("namespaceSelector: %w", err))
	}
	if a.Kind.GVK.Group == "" && a.Kind.Resource == "namespaces" {
		return objectLabelsMatch(s, a.Object, a.OldObject), nil
	}
	if !a.Kind.Namespaced {
		return true, nil
	}
	kind, ok := d.reg.Lookup("", "v1", "namespaces")
	if !ok {
		return false, nil
	}
	o := snap.Get(kind.Key("", a.Namespace))
	if o == nil {
		return s.Matches(labels.Set(nil)), nil
	}
	obj, err := kind.Decode(o)
	if err != nil {
		return false, apierrors.NewInternalError(err)
	}
	return s.Matches(labels.Set(obj.(*corev1.Namespace).Labels)), nil
}

// objectMatches matches the labels of the object or of the old object.
func objectMatches(a *Attributes, sel *metav1.LabelSelector) (bool, error) {
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		return true, nil
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false, apierrors.NewInternalError(fmt.Errorf("objectSelector: %w", err))
	}
	return objectLabelsMatch(s, a.Object, a.OldObject), nil
}

func objectLabelsMatch(s labels.Selector, objs ...runtime.Object) bool {
	for _, o := range objs {
		if o == nil {
			continue
		}
		if m, err := meta.Accessor(o); err == nil && s.Matches(labels.Set(m.GetLabels())) {
			return true
		}
	}
	return false
}
