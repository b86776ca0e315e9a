package registry

import (
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Leases (coordination.k8s.io/v1) carry node heartbeats and leader election.
func leaseKind() *Kind {
	return &Kind{
		GVK:                 coordinationv1.SchemeGroupVersion.WithKind("Lease"),
		Resource:            "leases",
		Namespaced:          true,
		AllowCreateOnUpdate: true,
		newObject:           func() runtime.Object { return &coordinationv1.Lease{} },
		newList:             func() runtime.Object { return &coordinationv1.LeaseList{} },
		validate: func(obj runtime.Object) field.ErrorList {
			s := obj.(*coordinationv1.Lease).Spec
			sp := field.NewPath("spec")
			var errs field.ErrorList
			if s.LeaseDurationSeconds != nil && *s.LeaseDurationSeconds <= 0 {
				errs = append(errs, field.Invalid(sp.Child("leaseDurationSeconds"), *s.LeaseDurationSeconds, "must be greater than 0"))
			}
			if s.LeaseTransitions != nil && *s.LeaseTransitions < 0 {
				errs = append(errs, field.Invalid(sp.Child("leaseTransitions"), *s.LeaseTransitions, "must be greater than or equal to 0"))
			}
			return errs
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Holder", "string", "holderIdentity contains the identity of the holder of a current lease.", 0),
			ageColumn,
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			l := obj.(*coordinationv1.Lease)
			holder := "<none>"
			if l.Spec.HolderIdentity != nil {
				holder = *l.Spec.HolderIdentity
			}
			return []any{l.Name, holder, Age(l.CreationTimestamp, now)}
		},
	}
}
