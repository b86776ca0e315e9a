package registry

import (
	"context"
	"fmt"
	"slices"
	"time"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	crdvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// CRDCleanupFinalizer holds a deleted CustomResourceDefinition until its
// custom objects are gone (the leader's CRD cleanup removes it), as
// kube-apiserver's finalizer of the same name.
const CRDCleanupFinalizer = "customresourcecleanup.apiextensions.k8s.io"

// customResourceDefinitionKind is apiextensions.k8s.io/v1
// CustomResourceDefinition. The CRD is validated by apiextensions-apiserver's
// own validation (structural schema, names, versions, CEL rules); its
// status (accepted names, Established, NamesAccepted, storedVersions) is
// set on every write, since a CRD that validates is served at once by
// every master (customresource.go). Names another CRD of the group already
// uses are refused with 422.
func customResourceDefinitionKind(r *Registry) *Kind {
	return &Kind{
		GVK:           apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition"),
		Resource:      "customresourcedefinitions",
		ShortNames:    []string{"crd", "crds"},
		Categories:    []string{"api-extensions"},
		HasStatus:     true,
		HasGeneration: true,
		// apiextensions validation checks the name (<plural>.<group>).
		NameFn:    func(string, bool) []string { return nil },
		newObject: func() runtime.Object { return &apiextensionsv1.CustomResourceDefinition{} },
		newList:   func() runtime.Object { return &apiextensionsv1.CustomResourceDefinitionList{} },
		prepareForCreate: func(obj runtime.Object) {
			crd := obj.(*apiextensionsv1.CustomResourceDefinition)
			crd.Status = apiextensionsv1.CustomResourceDefinitionStatus{}
			if !slices.Contains(crd.Finalizers, CRDCleanupFinalizer) {
				crd.Finalizers = append(crd.Finalizers, CRDCleanupFinalizer)
			}
			acceptCRD(crd)
		},
		prepareForUpdate: func(obj, _ runtime.Object) {
			acceptCRD(obj.(*apiextensionsv1.CustomResourceDefinition))
		},
		defaults: func(obj runtime.Object) {
			apiextensionsv1.SetObjectDefaults_CustomResourceDefinition(obj.(*apiextensionsv1.CustomResourceDefinition))
		},
		validate: func(obj runtime.Object) field.ErrorList {
			crd := obj.(*apiextensionsv1.CustomResourceDefinition)
			in, err := internalCRD(crd)
			if err != nil {
				return field.ErrorList{field.InternalError(field.NewPath("spec"), err)}
			}
			errs := crdvalidation.ValidateCustomResourceDefinition(context.Background(), in)
			return append(errs, r.crdNameConflicts(crd)...)
		},
		validateUpdate: func(obj, old runtime.Object) field.ErrorList {
			in, err := internalCRD(obj.(*apiextensionsv1.CustomResourceDefinition))
			if err != nil {
				return field.ErrorList{field.InternalError(field.NewPath("spec"), err)}
			}
			oin, err := internalCRD(old.(*apiextensionsv1.CustomResourceDefinition))
			if err != nil {
				return field.ErrorList{field.InternalError(field.NewPath("spec"), err)}
			}
			// The update validation repeats the create validation, which
			// validate has reported already.
			seen := map[string]bool{}
			for _, e := range crdvalidation.ValidateCustomResourceDefinition(context.Background(), in) {
				seen[e.Error()] = true
			}
			var errs field.ErrorList
			for _, e := range crdvalidation.ValidateCustomResourceDefinitionUpdate(context.Background(), in, oin) {
				if !seen[e.Error()] {
					errs = append(errs, e)
				}
			}
			return errs
		},
		columns: []metav1.TableColumnDefinition{nameColumn,
			{Name: "Created At", Type: "date", Description: "CreationTimestamp of the CustomResourceDefinition."}},
		cells: func(obj runtime.Object, _ time.Time) []any {
			crd := obj.(*apiextensionsv1.CustomResourceDefinition)
			return []any{crd.Name, crd.CreationTimestamp.UTC().Format(time.RFC3339)}
		},
	}
}

// internalCRD converts a v1 CRD to the internal form apiextensions'
// validation takes.
func internalCRD(crd *apiextensionsv1.CustomResourceDefinition) (*apiextensions.CustomResourceDefinition, error) {
	out := &apiextensions.CustomResourceDefinition{}
	if err := apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(crd, out, nil); err != nil {
		return nil, fmt.Errorf("convert CustomResourceDefinition %s: %w", crd.Name, err)
	}
	return out, nil
}

// acceptCRD sets what a CRD that passed validation is served with: its
// names are accepted, it is established, and its storage version is
// recorded.
func acceptCRD(crd *apiextensionsv1.CustomResourceDefinition) {
	crd.Status.AcceptedNames = crd.Spec.Names
	if crd.Status.AcceptedNames.Singular == "" {
		crd.Status.AcceptedNames.Singular = lower(crd.Spec.Names.Kind)
	}
	if crd.Status.AcceptedNames.ListKind == "" && crd.Spec.Names.Kind != "" {
		crd.Status.AcceptedNames.ListKind = crd.Spec.Names.Kind + "List"
	}
	for _, v := range crd.Spec.Versions {
		if v.Storage && !slices.Contains(crd.Status.StoredVersions, v.Name) {
			crd.Status.StoredVersions = append(crd.Status.StoredVersions, v.Name)
		}
	}
	setCRDCondition(crd, apiextensionsv1.NamesAccepted, "NoConflicts", "no conflicts found")
	setCRDCondition(crd, apiextensionsv1.Established, "InitialNamesAccepted", "the initial names have been accepted")
}

// setCRDCondition sets condition t to True, keeping its transition time
// when it was True already.
func setCRDCondition(crd *apiextensionsv1.CustomResourceDefinition, t apiextensionsv1.CustomResourceDefinitionConditionType, reason, msg string) {
	c := apiextensionsv1.CustomResourceDefinitionCondition{Type: t, Status: apiextensionsv1.ConditionTrue,
		Reason: reason, Message: msg, LastTransitionTime: metav1.NewTime(time.Now().UTC().Truncate(time.Second))}
	for i := range crd.Status.Conditions {
		if crd.Status.Conditions[i].Type == t {
			if crd.Status.Conditions[i].Status == apiextensionsv1.ConditionTrue {
				c.LastTransitionTime = crd.Status.Conditions[i].LastTransitionTime
			}
			crd.Status.Conditions[i] = c
			return
		}
	}
	crd.Status.Conditions = append(crd.Status.Conditions, c)
}

// crdNameConflicts refuses names (plural, singular, short names, kind,
// list kind) that another served CRD of the same group uses.
func (r *Registry) crdNameConflicts(crd *apiextensionsv1.CustomResourceDefinition) field.ErrorList {
	p := field.NewPath("spec", "names")
	n := crd.Spec.Names
	resources, kinds := map[string]string{}, map[string]string{}
	for _, other := range r.customSet().crds {
		if other.Name == crd.Name || other.Spec.Group != crd.Spec.Group {
			continue
		}
		on := other.Status.AcceptedNames
		for _, s := range append([]string{on.Plural, on.Singular}, on.ShortNames...) {
			if s != "" {
				resources[s] = other.Name
			}
		}
		for _, s := range []string{on.Kind, on.ListKind} {
			if s != "" {
				kinds[s] = other.Name
			}
		}
	}
	var errs field.ErrorList
	check := func(fp *field.Path, v string, used map[string]string) {
		if other, ok := used[v]; ok && v != "" {
			errs = append(errs, field.Invalid(fp, v, fmt.Sprintf("is already in use by CustomResourceDefinition %s", other)))
		}
	}
	check(p.Child("plural"), n.Plural, resources)
	check(p.Child("singular"), n.Singular, resources)
	for i, s := range n.ShortNames {
		check(p.Child("shortNames").Index(i), s, resources)
	}
	check(p.Child("kind"), n.Kind, kinds)
	check(p.Child("listKind"), n.ListKind, kinds)
	return errs
}
