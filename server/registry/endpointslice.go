package registry

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// maxEndpointsPerSlice and maxPortsPerSlice are kube-apiserver's limits.
const (
	maxEndpointsPerSlice = 1000
	maxPortsPerSlice     = 100
)

func endpointSliceKind() *Kind {
	return &Kind{
		GVK:        discoveryv1.SchemeGroupVersion.WithKind("EndpointSlice"),
		Resource:   "endpointslices",
		Namespaced: true,
		newObject:  func() runtime.Object { return &discoveryv1.EndpointSlice{} },
		newList:    func() runtime.Object { return &discoveryv1.EndpointSliceList{} },
		defaults: func(obj runtime.Object) {
			es := obj.(*discoveryv1.EndpointSlice)
			for i := range es.Ports {
				if es.Ports[i].Protocol == nil {
					p := corev1.ProtocolTCP
					es.Ports[i].Protocol = &p
				}
				if es.Ports[i].Name == nil {
					n := ""
					es.Ports[i].Name = &n
				}
			}
		},
		validate: func(obj runtime.Object) field.ErrorList {
			return validateEndpointSlice(obj.(*discoveryv1.EndpointSlice))
		},
		validateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return apivalidation.ValidateImmutableField(obj.(*discoveryv1.EndpointSlice).AddressType, old.(*discoveryv1.EndpointSlice).AddressType, field.NewPath("addressType"))
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("AddressType", "string", "Type of address carried by this EndpointSlice.", 0),
			col("Ports", "string", "Ports provided by this EndpointSlice.", 0),
			col("Endpoints", "string", "Endpoints included in this EndpointSlice.", 0),
			ageColumn,
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			es := obj.(*discoveryv1.EndpointSlice)
			return []any{es.Name, string(es.AddressType), endpointSlicePorts(es), endpointSliceAddresses(es), Age(es.CreationTimestamp, now)}
		},
	}
}

func validateEndpointSlice(es *discoveryv1.EndpointSlice) field.ErrorList {
	var errs field.ErrorList
	types := []string{string(discoveryv1.AddressTypeIPv4), string(discoveryv1.AddressTypeIPv6), string(discoveryv1.AddressTypeFQDN)}
	if es.AddressType == "" {
		errs = append(errs, field.Required(field.NewPath("addressType"), ""))
	} else if !contains(types, string(es.AddressType)) {
		errs = append(errs, field.NotSupported(field.NewPath("addressType"), es.AddressType, types))
	}
	ep := field.NewPath("endpoints")
	if len(es.Endpoints) > maxEndpointsPerSlice {
		errs = append(errs, field.TooMany(ep, len(es.Endpoints), maxEndpointsPerSlice))
	}
	for i, e := range es.Endpoints {
		ap := ep.Index(i).Child("addresses")
		if len(e.Addresses) == 0 {
			errs = append(errs, field.Required(ap, "must contain at least 1 address"))
		} else if len(e.Addresses) > 100 {
			errs = append(errs, field.TooMany(ap, len(e.Addresses), 100))
		}
		for j, a := range e.Addresses {
			switch es.AddressType {
			case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6:
				errs = append(errs, utilvalidation.IsValidIP(ap.Index(j), a)...)
			case discoveryv1.AddressTypeFQDN:
				for _, msg := range utilvalidation.IsFullyQualifiedDomainName(ap.Index(j), a) {
					errs = append(errs, msg)
				}
			}
		}
		if e.NodeName != nil {
			for _, msg := range apivalidation.NameIsDNSSubdomain(*e.NodeName, false) {
				errs = append(errs, field.Invalid(ep.Index(i).Child("nodeName"), *e.NodeName, msg))
			}
		}
	}
	pp := field.NewPath("ports")
	if len(es.Ports) > maxPortsPerSlice {
		errs = append(errs, field.TooMany(pp, len(es.Ports), maxPortsPerSlice))
	}
	names := map[string]bool{}
	for i, p := range es.Ports {
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		if name != "" {
			for _, msg := range utilvalidation.IsDNS1123Label(name) {
				errs = append(errs, field.Invalid(pp.Index(i).Child("name"), name, msg))
			}
		}
		if names[name] {
			errs = append(errs, field.Duplicate(pp.Index(i).Child("name"), name))
		}
		names[name] = true
		if p.Protocol != nil && !contains(supportedProtocols, string(*p.Protocol)) {
			errs = append(errs, field.NotSupported(pp.Index(i).Child("protocol"), *p.Protocol, supportedProtocols))
		}
		if p.Port != nil {
			for _, msg := range utilvalidation.IsValidPortNum(int(*p.Port)) {
				errs = append(errs, field.Invalid(pp.Index(i).Child("port"), *p.Port, msg))
			}
		}
	}
	return errs
}

func endpointSlicePorts(es *discoveryv1.EndpointSlice) string {
	if len(es.Ports) == 0 {
		return "<unset>"
	}
	var out []string
	for _, p := range es.Ports {
		if p.Port == nil {
			out = append(out, "<unset>")
		} else {
			out = append(out, fmt.Sprint(*p.Port))
		}
	}
	return strings.Join(out, ",")
}

func endpointSliceAddresses(es *discoveryv1.EndpointSlice) string {
	var list []string
	total := 0
	for _, e := range es.Endpoints {
		for _, a := range e.Addresses {
			total++
			if len(list) < 3 {
				list = append(list, a)
			}
		}
	}
	if total == 0 {
		return "<unset>"
	}
	s := strings.Join(list, ",")
	if total > len(list) {
		s += fmt.Sprintf(" + %d more...", total-len(list))
	}
	return s
}
