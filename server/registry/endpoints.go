package registry

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Endpoints are written by the endpoints controller; PUT may create them.
func endpointsKind() *Kind {
	return &Kind{
		GVK:                 corev1.SchemeGroupVersion.WithKind("Endpoints"),
		Resource:            "endpoints",
		Namespaced:          true,
		Singular:            "endpoints",
		ShortNames:          []string{"ep"},
		AllowCreateOnUpdate: true,
		newObject:           func() runtime.Object { return &corev1.Endpoints{} },
		newList:             func() runtime.Object { return &corev1.EndpointsList{} },
		defaults: func(obj runtime.Object) {
			ep := obj.(*corev1.Endpoints)
			for i := range ep.Subsets {
				for j := range ep.Subsets[i].Ports {
					if ep.Subsets[i].Ports[j].Protocol == "" {
						ep.Subsets[i].Ports[j].Protocol = corev1.ProtocolTCP
					}
				}
			}
		},
		validate: func(obj runtime.Object) field.ErrorList { return validateEndpoints(obj.(*corev1.Endpoints)) },
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Endpoints", "string", "Endpoints is the list of endpoints in the subsets.", 0),
			ageColumn,
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			ep := obj.(*corev1.Endpoints)
			return []any{ep.Name, endpointsString(ep), Age(ep.CreationTimestamp, now)}
		},
	}
}

func validateEndpoints(ep *corev1.Endpoints) field.ErrorList {
	var errs field.ErrorList
	for i, ss := range ep.Subsets {
		sp := field.NewPath("subsets").Index(i)
		for j, a := range ss.Addresses {
			errs = append(errs, utilvalidation.IsValidIP(sp.Child("addresses").Index(j).Child("ip"), a.IP)...)
		}
		for j, a := range ss.NotReadyAddresses {
			errs = append(errs, utilvalidation.IsValidIP(sp.Child("notReadyAddresses").Index(j).Child("ip"), a.IP)...)
		}
		for j, p := range ss.Ports {
			pp := sp.Child("ports").Index(j)
			for _, msg := range utilvalidation.IsValidPortNum(int(p.Port)) {
				errs = append(errs, field.Invalid(pp.Child("port"), p.Port, msg))
			}
			if !contains(supportedProtocols, string(p.Protocol)) {
				errs = append(errs, field.NotSupported(pp.Child("protocol"), p.Protocol, supportedProtocols))
			}
		}
	}
	return errs
}

// endpointsString renders up to three endpoints as kubectl does.
func endpointsString(ep *corev1.Endpoints) string {
	var list []string
	total := 0
	for _, ss := range ep.Subsets {
		for _, a := range ss.Addresses {
			if len(ss.Ports) == 0 {
				total++
				if len(list) < 3 {
					list = append(list, a.IP)
				}
				continue
			}
			for _, p := range ss.Ports {
				total++
				if len(list) < 3 {
					list = append(list, fmt.Sprintf("%s:%d", a.IP, p.Port))
				}
			}
		}
	}
	if total == 0 {
		return "<none>"
	}
	s := strings.Join(list, ",")
	if total > len(list) {
		s += fmt.Sprintf(" + %d more...", total-len(list))
	}
	return s
}
