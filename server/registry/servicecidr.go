package registry

import (
	"net/netip"
	"strings"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// IPAddresses (networking.k8s.io/v1, cluster-scoped, named by the
// address in canonical form) are the reservations of Service cluster IPs:
// the API server creates one with each Service that takes an address and
// deletes it with the Service (server/servicealloc); other clients may
// create their own, which the allocator then treats as taken.
func ipAddressKind() *Kind {
	return &Kind{
		GVK:        networkingv1.SchemeGroupVersion.WithKind("IPAddress"),
		Resource:   "ipaddresses",
		ShortNames: []string{"ip"},
		NameFn:     ipAddressName,
		newObject:  func() runtime.Object { return &networkingv1.IPAddress{} },
		newList:    func() runtime.Object { return &networkingv1.IPAddressList{} },
		validate: func(obj runtime.Object) field.ErrorList {
			return validateParentRef(obj.(*networkingv1.IPAddress).Spec.ParentRef, field.NewPath("spec"))
		},
		validateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return apivalidation.ValidateImmutableField(obj.(*networkingv1.IPAddress).Spec.ParentRef,
				old.(*networkingv1.IPAddress).Spec.ParentRef, field.NewPath("spec", "parentRef"))
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("ParentRef", "string", networkingv1.IPAddressSpec{}.SwaggerDoc()["parentRef"], 0),
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			ip := obj.(*networkingv1.IPAddress)
			parent := "<none>"
			if r := ip.Spec.ParentRef; r != nil {
				parent = strings.ToLower(schema.GroupResource{Group: r.Group, Resource: r.Resource}.String())
				if r.Namespace != "" {
					parent += "/" + r.Namespace
				}
				parent += "/" + r.Name
			}
			return []any{ip.Name, parent}
		},
	}
}

// ipAddressName accepts an IP address in canonical form (generateName is
// not supported: kube-apiserver uses the prefix as the name).
func ipAddressName(name string, prefix bool) []string {
	var out []string
	for _, e := range validation.IsValidIP(&field.Path{}, name) {
		out = append(out, e.Detail)
	}
	return out
}

func validateParentRef(r *networkingv1.ParentReference, p *field.Path) field.ErrorList {
	if r == nil {
		return field.ErrorList{field.Required(p.Child("parentRef"), "")}
	}
	p = p.Child("parentRef")
	var errs field.ErrorList
	if r.Group != "" {
		for _, msg := range validation.IsDNS1123Subdomain(r.Group) {
			errs = append(errs, field.Invalid(p.Child("group"), r.Group, msg))
		}
	}
	segment := func(name, v string, required bool) {
		if v == "" {
			if required {
				errs = append(errs, field.Required(p.Child(name), ""))
			}
			return
		}
		for _, msg := range path.IsValidPathSegmentName(v) {
			errs = append(errs, field.Invalid(p.Child(name), v, msg))
		}
	}
	segment("resource", r.Resource, true)
	segment("name", r.Name, true)
	segment("namespace", r.Namespace, false)
	return errs
}

// DefaultServiceCIDRName is the ServiceCIDR of the server's
// --service-cidr, as kube-apiserver names it.
const DefaultServiceCIDRName = "kubernetes"

// ServiceCIDRs (networking.k8s.io/v1, cluster-scoped, with status) are
// ranges of Service cluster IPs. The leader keeps the default one
// (`kubernetes`, the --service-cidr) with its Ready condition; Skiff
// allocates from that range only, so other ServiceCIDRs are stored
// without being used (docs/api.md).
func serviceCIDRKind() *Kind {
	return &Kind{
		GVK:       networkingv1.SchemeGroupVersion.WithKind("ServiceCIDR"),
		Resource:  "servicecidrs",
		HasStatus: true,
		newObject: func() runtime.Object { return &networkingv1.ServiceCIDR{} },
		newList:   func() runtime.Object { return &networkingv1.ServiceCIDRList{} },
		prepareForCreate: func(obj runtime.Object) {
			obj.(*networkingv1.ServiceCIDR).Status = networkingv1.ServiceCIDRStatus{}
		},
		validate: func(obj runtime.Object) field.ErrorList {
			return validateServiceCIDRs(obj.(*networkingv1.ServiceCIDR).Spec.CIDRs, field.NewPath("spec", "cidrs"))
		},
		validateUpdate: func(obj, old runtime.Object) field.ErrorList {
			cur, prev := obj.(*networkingv1.ServiceCIDR).Spec.CIDRs, old.(*networkingv1.ServiceCIDR).Spec.CIDRs
			p := field.NewPath("spec", "cidrs")
			var errs field.ErrorList
			switch {
			case len(cur) == len(prev):
				for i := range prev {
					if cur[i] != prev[i] {
						errs = append(errs, field.Invalid(p.Index(i), cur[i], apivalidation.FieldImmutableErrorMsg))
					}
				}
			case len(prev) == 1 && len(cur) == 2:
				// A single-stack range may become dual-stack.
				if cur[0] != prev[0] {
					errs = append(errs, field.Invalid(p.Index(0), cur[0], apivalidation.FieldImmutableErrorMsg))
				}
			default:
				errs = append(errs, field.Invalid(p, cur, apivalidation.FieldImmutableErrorMsg))
			}
			return errs
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("CIDRs", "string", networkingv1.ServiceCIDRSpec{}.SwaggerDoc()["cidrs"], 0),
			ageColumn,
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			c := obj.(*networkingv1.ServiceCIDR)
			return []any{c.Name, strings.Join(c.Spec.CIDRs, ","), Age(c.CreationTimestamp, now)}
		},
	}
}

func validateServiceCIDRs(cidrs []string, p *field.Path) field.ErrorList {
	switch {
	case len(cidrs) == 0:
		return field.ErrorList{field.Required(p, "at least one CIDR required")}
	case len(cidrs) > 2:
		return field.ErrorList{field.Invalid(p, cidrs, "may only hold up to 2 values")}
	}
	var errs field.ErrorList
	for i, c := range cidrs {
		errs = append(errs, validation.IsValidCIDR(p.Index(i), c)...)
	}
	if len(cidrs) == 2 {
		a, errA := netip.ParsePrefix(cidrs[0])
		b, errB := netip.ParsePrefix(cidrs[1])
		if errA == nil && errB == nil && a.Addr().Is4() == b.Addr().Is4() {
			errs = append(errs, field.Invalid(p, cidrs, "may specify no more than one IP for each IP family, i.e 192.168.0.0/24 and 2001:db8::/64"))
		}
	}
	return errs
}
