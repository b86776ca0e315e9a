package registry

import (
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// NetworkPolicies are enforced by the agents (package nettools/netpol).
func networkPolicyKind() *Kind {
	return &Kind{
		GVK:           networkingv1.SchemeGroupVersion.WithKind("NetworkPolicy"),
		Resource:      "networkpolicies",
		Namespaced:    true,
		ShortNames:    []string{"netpol"},
		HasGeneration: true,
		newObject:     func() runtime.Object { return &networkingv1.NetworkPolicy{} },
		newList:       func() runtime.Object { return &networkingv1.NetworkPolicyList{} },
		defaults:      func(obj runtime.Object) { defaultNetworkPolicy(obj.(*networkingv1.NetworkPolicy)) },
		validate: func(obj runtime.Object) field.ErrorList {
			return validateNetworkPolicySpec(&obj.(*networkingv1.NetworkPolicy).Spec, field.NewPath("spec"))
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Pod-Selector", "string", "Selects the pods to which this NetworkPolicy object applies.", 0),
			ageColumn,
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			p := obj.(*networkingv1.NetworkPolicy)
			sel := metav1.FormatLabelSelector(&p.Spec.PodSelector)
			return []any{p.Name, sel, Age(p.CreationTimestamp, now)}
		},
	}
}

// defaultNetworkPolicy sets what the API server defaults: TCP as the
// port protocol, and policyTypes from the rules present (Ingress always,
// Egress when there are egress rules).
func defaultNetworkPolicy(p *networkingv1.NetworkPolicy) {
	tcp := corev1.ProtocolTCP
	for i := range p.Spec.Ingress {
		for j := range p.Spec.Ingress[i].Ports {
			if p.Spec.Ingress[i].Ports[j].Protocol == nil {
				p.Spec.Ingress[i].Ports[j].Protocol = &tcp
			}
		}
	}
	for i := range p.Spec.Egress {
		for j := range p.Spec.Egress[i].Ports {
			if p.Spec.Egress[i].Ports[j].Protocol == nil {
				p.Spec.Egress[i].Ports[j].Protocol = &tcp
			}
		}
	}
	if len(p.Spec.PolicyTypes) == 0 {
		p.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if len(p.Spec.Egress) > 0 {
			p.Spec.PolicyTypes = append(p.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		}
	}
}

func validateNetworkPolicySpec(s *networkingv1.NetworkPolicySpec, sp *field.Path) field.ErrorList {
	opts := metav1validation.LabelSelectorValidationOptions{}
	errs := metav1validation.ValidateLabelSelector(&s.PodSelector, opts, sp.Child("podSelector"))
	for i, r := range s.Ingress {
		p := sp.Child("ingress").Index(i)
		errs = append(errs, validateNetPolPorts(r.Ports, p.Child("ports"))...)
		for j := range r.From {
			errs = append(errs, validateNetPolPeer(&r.From[j], p.Child("from").Index(j))...)
		}
	}
	for i, r := range s.Egress {
		p := sp.Child("egress").Index(i)
		errs = append(errs, validateNetPolPorts(r.Ports, p.Child("ports"))...)
		for j := range r.To {
			errs = append(errs, validateNetPolPeer(&r.To[j], p.Child("to").Index(j))...)
		}
	}
	allowed := []string{string(networkingv1.PolicyTypeIngress), string(networkingv1.PolicyTypeEgress)}
	if len(s.PolicyTypes) > len(allowed) {
		errs = append(errs, field.Invalid(sp.Child("policyTypes"), s.PolicyTypes, "may not specify more than two policyTypes"))
	}
	for i, t := range s.PolicyTypes {
		if !contains(allowed, string(t)) {
			errs = append(errs, field.NotSupported(sp.Child("policyTypes").Index(i), t, allowed))
		}
	}
	return errs
}

func validateNetPolPorts(ports []networkingv1.NetworkPolicyPort, pp *field.Path) field.ErrorList {
	var errs field.ErrorList
	protocols := []string{string(corev1.ProtocolTCP), string(corev1.ProtocolUDP), string(corev1.ProtocolSCTP)}
	for i, port := range ports {
		p := pp.Index(i)
		if port.Protocol != nil && !contains(protocols, string(*port.Protocol)) {
			errs = append(errs, field.NotSupported(p.Child("protocol"), *port.Protocol, protocols))
		}
		if port.Port == nil {
			if port.EndPort != nil {
				errs = append(errs, field.Forbidden(p.Child("endPort"), "may not be specified when `port` is not specified"))
			}
			continue
		}
		if port.Port.Type == intstr.Int {
			for _, msg := range validation.IsValidPortNum(int(port.Port.IntVal)) {
				errs = append(errs, field.Invalid(p.Child("port"), port.Port.IntVal, msg))
			}
			if port.EndPort != nil {
				if *port.EndPort < port.Port.IntVal {
					errs = append(errs, field.Invalid(p.Child("endPort"), *port.EndPort, "must be greater than or equal to `port`"))
				}
				for _, msg := range validation.IsValidPortNum(int(*port.EndPort)) {
					errs = append(errs, field.Invalid(p.Child("endPort"), *port.EndPort, msg))
				}
			}
			continue
		}
		if port.EndPort != nil {
			errs = append(errs, field.Forbidden(p.Child("endPort"), "may not be specified when `port` is non-numeric"))
		}
		for _, msg := range validation.IsValidPortName(port.Port.StrVal) {
			errs = append(errs, field.Invalid(p.Child("port"), port.Port.StrVal, msg))
		}
	}
	return errs
}

func validateNetPolPeer(peer *networkingv1.NetworkPolicyPeer, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	opts := metav1validation.LabelSelectorValidationOptions{}
	n := 0
	if peer.PodSelector != nil {
		n++
		errs = append(errs, metav1validation.ValidateLabelSelector(peer.PodSelector, opts, p.Child("podSelector"))...)
	}
	if peer.NamespaceSelector != nil {
		n++
		errs = append(errs, metav1validation.ValidateLabelSelector(peer.NamespaceSelector, opts, p.Child("namespaceSelector"))...)
	}
	if peer.IPBlock != nil {
		if n > 0 {
			errs = append(errs, field.Forbidden(p, "may not specify both ipBlock and another peer"))
		}
		n++
		errs = append(errs, validateIPBlock(peer.IPBlock, p.Child("ipBlock"))...)
	}
	if n == 0 {
		errs = append(errs, field.Required(p, "must specify a peer"))
	}
	return errs
}

func validateIPBlock(b *networkingv1.IPBlock, p *field.Path) field.ErrorList {
	if b.CIDR == "" {
		return field.ErrorList{field.Required(p.Child("cidr"), "")}
	}
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		return field.ErrorList{field.Invalid(p.Child("cidr"), b.CIDR, "must be a valid CIDR (e.g. 10.0.0.0/16)")}
	}
	var errs field.ErrorList
	for i, e := range b.Except {
		ep := p.Child("except").Index(i)
		ex, err := netip.ParsePrefix(e)
		if err != nil {
			errs = append(errs, field.Invalid(ep, e, "must be a valid CIDR (e.g. 10.0.0.0/24)"))
			continue
		}
		if ex.Addr().Is4() != cidr.Addr().Is4() || ex.Bits() <= cidr.Bits() || !cidr.Masked().Contains(ex.Addr()) {
			errs = append(errs, field.Invalid(ep, e, "must be a strict subset of `cidr`"))
		}
	}
	return errs
}
