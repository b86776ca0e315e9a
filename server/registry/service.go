package registry

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Services. Cluster IP allocation is not done here (the allocator owns it).
func serviceKind() *Kind {
	return &Kind{
		GVK:                 corev1.SchemeGroupVersion.WithKind("Service"),
		Resource:            "services",
		Namespaced:          true,
		ShortNames:          []string{"svc"},
		Categories:          []string{"all"},
		HasStatus:           true,
		ReturnDeletedObject: true,
		NameFn:              apivalidation.NameIsDNS1035Label,
		newObject:           func() runtime.Object { return &corev1.Service{} },
		newList:             func() runtime.Object { return &corev1.ServiceList{} },
		prepareForCreate: func(obj runtime.Object) {
			obj.(*corev1.Service).Status = corev1.ServiceStatus{}
		},
		defaults: func(obj runtime.Object) { defaultService(obj.(*corev1.Service)) },
		validate: func(obj runtime.Object) field.ErrorList { return validateService(obj.(*corev1.Service)) },
		prepareForUpdate: func(obj, old runtime.Object) {
			svc, o := obj.(*corev1.Service), old.(*corev1.Service)
			dropTypeDependentFields(svc, o)
			// A client that leaves the allocated cluster IP out keeps it.
			if svc.Spec.ClusterIP == "" && svc.Spec.Type != corev1.ServiceTypeExternalName {
				svc.Spec.ClusterIP, svc.Spec.ClusterIPs = o.Spec.ClusterIP, o.Spec.ClusterIPs
			}
		},
		validateUpdate: func(obj, old runtime.Object) field.ErrorList {
			svc, o := obj.(*corev1.Service), old.(*corev1.Service)
			if o.Spec.ClusterIP == "" || o.Spec.Type == corev1.ServiceTypeExternalName || svc.Spec.Type == corev1.ServiceTypeExternalName {
				return nil
			}
			return apivalidation.ValidateImmutableField(svc.Spec.ClusterIP, o.Spec.ClusterIP, field.NewPath("spec", "clusterIP"))
		},
		fieldNames: []string{"spec.clusterIP", "spec.type"},
		fields: func(obj runtime.Object) fields.Set {
			svc := obj.(*corev1.Service)
			return fields.Set{"spec.clusterIP": svc.Spec.ClusterIP, "spec.type": string(svc.Spec.Type)}
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Type", "string", "type determines how the Service is exposed.", 0),
			col("Cluster-IP", "string", "clusterIP is the IP address of the service.", 0),
			col("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.", 0),
			col("Port(s)", "string", "The list of ports that are exposed by this service.", 0),
			ageColumn,
			col("Selector", "string", "Route service traffic to pods with label keys and values matching this selector.", 1),
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			svc := obj.(*corev1.Service)
			return []any{svc.Name, string(svc.Spec.Type), orNone(svc.Spec.ClusterIP), serviceExternalIP(svc),
				servicePorts(svc), Age(svc.CreationTimestamp, now), selectorString(svc.Spec.Selector)}
		},

		// The proxy subresource (subresource.go).
		extraSubresources: serviceSubresources,
	}
}

func defaultService(svc *corev1.Service) {
	s := &svc.Spec
	if s.Type == "" {
		s.Type = corev1.ServiceTypeClusterIP
	}
	if s.SessionAffinity == "" {
		s.SessionAffinity = corev1.ServiceAffinityNone
	}
	for i := range s.Ports {
		p := &s.Ports[i]
		if p.Protocol == "" {
			p.Protocol = corev1.ProtocolTCP
		}
		if p.TargetPort == (intstr.IntOrString{}) {
			p.TargetPort = intstr.FromInt32(p.Port)
		}
	}
	if s.Type != corev1.ServiceTypeExternalName && s.InternalTrafficPolicy == nil {
		p := corev1.ServiceInternalTrafficPolicyCluster
		s.InternalTrafficPolicy = &p
	}
	if (s.Type == corev1.ServiceTypeNodePort || s.Type == corev1.ServiceTypeLoadBalancer) && s.ExternalTrafficPolicy == "" {
		s.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	}
	if s.ClusterIP != "" && len(s.ClusterIPs) == 0 {
		s.ClusterIPs = []string{s.ClusterIP}
	}
}

// dropTypeDependentFields clears, on an update that changes the type, the
// values the old type had and the new one has no use for, when the
// client left them as they were (as kube-apiserver's Service strategy
// does): a NodePort Service turned ExternalName loses its cluster IPs,
// IP families and node ports, and the allocator frees them.
func dropTypeDependentFields(svc, old *corev1.Service) {
	s, o := &svc.Spec, &old.Spec
	if needsClusterIP(o) && !needsClusterIP(s) {
		// clusterIPs decide (an older client clears clusterIP only).
		if slices.Equal(s.ClusterIPs, o.ClusterIPs) {
			s.ClusterIP, s.ClusterIPs = "", nil
		}
		if slices.Equal(s.IPFamilies, o.IPFamilies) {
			s.IPFamilies = nil
		}
		if ptrEqual(s.IPFamilyPolicy, o.IPFamilyPolicy) {
			s.IPFamilyPolicy = nil
		}
	}
	if needsNodePorts(o) && !needsNodePorts(s) && sameNodePorts(s, o) {
		for i := range s.Ports {
			s.Ports[i].NodePort = 0
		}
	}
	if o.Type == corev1.ServiceTypeLoadBalancer && s.Type != corev1.ServiceTypeLoadBalancer {
		if ptrEqual(s.AllocateLoadBalancerNodePorts, o.AllocateLoadBalancerNodePorts) {
			s.AllocateLoadBalancerNodePorts = nil
		}
		if ptrEqual(s.LoadBalancerClass, o.LoadBalancerClass) {
			s.LoadBalancerClass = nil
		}
		if s.HealthCheckNodePort == o.HealthCheckNodePort {
			s.HealthCheckNodePort = 0
		}
	}
	if externallyAccessible(o) && !externallyAccessible(s) && s.ExternalTrafficPolicy == o.ExternalTrafficPolicy {
		s.ExternalTrafficPolicy = ""
	}
}

func needsClusterIP(s *corev1.ServiceSpec) bool { return s.Type != corev1.ServiceTypeExternalName }

func needsNodePorts(s *corev1.ServiceSpec) bool {
	return s.Type == corev1.ServiceTypeNodePort || s.Type == corev1.ServiceTypeLoadBalancer
}

func externallyAccessible(s *corev1.ServiceSpec) bool {
	return needsNodePorts(s) || (s.Type == corev1.ServiceTypeClusterIP && len(s.ExternalIPs) > 0)
}

// sameNodePorts reports whether every port of s that o also has (by
// position, as the client sent it back) keeps its node port.
func sameNodePorts(s, o *corev1.ServiceSpec) bool {
	for i := range s.Ports {
		if i >= len(o.Ports) || s.Ports[i].NodePort != o.Ports[i].NodePort {
			if s.Ports[i].NodePort != 0 {
				return false
			}
		}
	}
	return true
}

func ptrEqual[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func validateService(svc *corev1.Service) field.ErrorList {
	var errs field.ErrorList
	s, sp := &svc.Spec, field.NewPath("spec")
	types := []string{string(corev1.ServiceTypeClusterIP), string(corev1.ServiceTypeNodePort),
		string(corev1.ServiceTypeLoadBalancer), string(corev1.ServiceTypeExternalName)}
	if !contains(types, string(s.Type)) {
		errs = append(errs, field.NotSupported(sp.Child("type"), s.Type, types))
	}
	affinities := []string{string(corev1.ServiceAffinityClientIP), string(corev1.ServiceAffinityNone)}
	if !contains(affinities, string(s.SessionAffinity)) {
		errs = append(errs, field.NotSupported(sp.Child("sessionAffinity"), s.SessionAffinity, affinities))
	}
	headless := s.ClusterIP == corev1.ClusterIPNone
	if s.Type == corev1.ServiceTypeExternalName {
		// An ExternalName Service is a DNS alias: it holds no cluster IP.
		if s.ClusterIP != "" || len(s.ClusterIPs) > 0 {
			errs = append(errs, field.Forbidden(sp.Child("clusterIPs"), "may not be set for ExternalName services"))
		}
		if len(s.IPFamilies) > 0 {
			errs = append(errs, field.Forbidden(sp.Child("ipFamilies"), "may not be set for ExternalName services"))
		}
		if s.IPFamilyPolicy != nil {
			errs = append(errs, field.Forbidden(sp.Child("ipFamilyPolicy"), "may not be set for ExternalName services"))
		}
		if s.ExternalName == "" {
			errs = append(errs, field.Required(sp.Child("externalName"), ""))
		} else {
			for _, msg := range utilvalidation.IsDNS1123Subdomain(strings.TrimSuffix(s.ExternalName, ".")) {
				errs = append(errs, field.Invalid(sp.Child("externalName"), s.ExternalName, msg))
			}
		}
	} else if len(s.Ports) == 0 && !headless {
		errs = append(errs, field.Required(sp.Child("ports"), ""))
	}
	names := map[string]bool{}
	for i, p := range s.Ports {
		pp := sp.Child("ports").Index(i)
		if len(s.Ports) > 1 && p.Name == "" {
			errs = append(errs, field.Required(pp.Child("name"), ""))
		} else if p.Name != "" {
			for _, msg := range utilvalidation.IsDNS1123Label(p.Name) {
				errs = append(errs, field.Invalid(pp.Child("name"), p.Name, msg))
			}
			if names[p.Name] {
				errs = append(errs, field.Duplicate(pp.Child("name"), p.Name))
			}
			names[p.Name] = true
		}
		for _, msg := range utilvalidation.IsValidPortNum(int(p.Port)) {
			errs = append(errs, field.Invalid(pp.Child("port"), p.Port, msg))
		}
		if !contains(supportedProtocols, string(p.Protocol)) {
			errs = append(errs, field.NotSupported(pp.Child("protocol"), p.Protocol, supportedProtocols))
		}
		errs = append(errs, validatePortOrName(p.TargetPort, pp.Child("targetPort"))...)
		if p.NodePort != 0 {
			if s.Type == corev1.ServiceTypeClusterIP || s.Type == corev1.ServiceTypeExternalName {
				errs = append(errs, field.Forbidden(pp.Child("nodePort"), "may not be used when `type` is 'ClusterIP'"))
			}
			for _, msg := range utilvalidation.IsValidPortNum(int(p.NodePort)) {
				errs = append(errs, field.Invalid(pp.Child("nodePort"), p.NodePort, msg))
			}
		}
	}
	if s.ClusterIP != "" && !headless {
		for _, e := range utilvalidation.IsValidIP(sp.Child("clusterIP"), s.ClusterIP) {
			errs = append(errs, e)
		}
	}
	return errs
}

func servicePorts(svc *corev1.Service) string {
	if len(svc.Spec.Ports) == 0 {
		return "<none>"
	}
	parts := make([]string, 0, len(svc.Spec.Ports))
	for _, p := range svc.Spec.Ports {
		if p.NodePort == 0 {
			parts = append(parts, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
		} else {
			parts = append(parts, fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, p.Protocol))
		}
	}
	return strings.Join(parts, ",")
}

func serviceExternalIP(svc *corev1.Service) string {
	switch svc.Spec.Type {
	case corev1.ServiceTypeExternalName:
		return svc.Spec.ExternalName
	case corev1.ServiceTypeLoadBalancer:
		ips := append([]string(nil), svc.Spec.ExternalIPs...)
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				ips = append(ips, in.IP)
			} else if in.Hostname != "" {
				ips = append(ips, in.Hostname)
			}
		}
		if len(ips) == 0 {
			return "<pending>"
		}
		return strings.Join(ips, ",")
	}
	if len(svc.Spec.ExternalIPs) > 0 {
		return strings.Join(svc.Spec.ExternalIPs, ",")
	}
	return "<none>"
}
