package registry

import (
	"strings"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Ingresses are served by the agents' built-in controller
// (nettools/ingress) for the class "skiff", and by any other controller
// for theirs.
func ingressKind() *Kind {
	return &Kind{
		GVK:           networkingv1.SchemeGroupVersion.WithKind("Ingress"),
		Resource:      "ingresses",
		Namespaced:    true,
		ShortNames:    []string{"ing"},
		HasStatus:     true,
		HasGeneration: true,
		newObject:     func() runtime.Object { return &networkingv1.Ingress{} },
		newList:       func() runtime.Object { return &networkingv1.IngressList{} },
		prepareForCreate: func(obj runtime.Object) {
			obj.(*networkingv1.Ingress).Status = networkingv1.IngressStatus{}
		},
		validate: func(obj runtime.Object) field.ErrorList {
			return validateIngressSpec(&obj.(*networkingv1.Ingress).Spec, field.NewPath("spec"))
		},
		validateStatus: func(obj runtime.Object) field.ErrorList {
			var errs field.ErrorList
			p := field.NewPath("status", "loadBalancer", "ingress")
			for i, in := range obj.(*networkingv1.Ingress).Status.LoadBalancer.Ingress {
				if in.IP != "" {
					for _, msg := range validation.IsValidIP(p.Index(i).Child("ip"), in.IP) {
						errs = append(errs, msg)
					}
				}
			}
			return errs
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Class", "string", "The name of the IngressClass resource this Ingress uses.", 0),
			col("Hosts", "string", "Hosts that incoming requests are matched against before the ingress rule", 0),
			col("Address", "string", "Address is a list containing ingress points for the load-balancer", 0),
			col("Ports", "string", "Ports of TLS configurations that open", 0),
			ageColumn,
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			in := obj.(*networkingv1.Ingress)
			class := "<none>"
			if in.Spec.IngressClassName != nil {
				class = *in.Spec.IngressClassName
			}
			var hosts []string
			for _, r := range in.Spec.Rules {
				if r.Host != "" {
					hosts = append(hosts, r.Host)
				}
			}
			h := "*"
			if len(hosts) > 0 {
				h = strings.Join(hosts, ",")
			}
			var addrs []string
			for _, a := range in.Status.LoadBalancer.Ingress {
				if a.IP != "" {
					addrs = append(addrs, a.IP)
				} else if a.Hostname != "" {
					addrs = append(addrs, a.Hostname)
				}
			}
			ports := "80"
			if len(in.Spec.TLS) > 0 {
				ports = "80, 443"
			}
			return []any{in.Name, class, h, strings.Join(addrs, ","), ports, Age(in.CreationTimestamp, now)}
		},
	}
}

// validateIngressSpec checks what kube-apiserver's Ingress validation
// checks (networking/validation): a default backend or rules; backends
// naming a service and one port (or a resource); hosts as DNS names or
// one leading wildcard label; paths by path type.
func validateIngressSpec(s *networkingv1.IngressSpec, sp *field.Path) field.ErrorList {
	var errs field.ErrorList
	if s.DefaultBackend == nil && len(s.Rules) == 0 {
		errs = append(errs, field.Invalid(sp, "", "either `defaultBackend` or `rules` must be specified"))
	}
	if s.DefaultBackend != nil {
		errs = append(errs, validateIngressBackend(s.DefaultBackend, sp.Child("defaultBackend"))...)
	}
	if s.IngressClassName != nil {
		for _, msg := range validation.IsDNS1123Subdomain(*s.IngressClassName) {
			errs = append(errs, field.Invalid(sp.Child("ingressClassName"), *s.IngressClassName, msg))
		}
	}
	for i, r := range s.Rules {
		rp := sp.Child("rules").Index(i)
		if r.Host != "" {
			errs = append(errs, validateIngressHost(r.Host, rp.Child("host"))...)
		}
		if r.HTTP == nil {
			continue
		}
		pp := rp.Child("http", "paths")
		if len(r.HTTP.Paths) == 0 {
			errs = append(errs, field.Required(pp, ""))
		}
		for j, p := range r.HTTP.Paths {
			errs = append(errs, validateIngressPath(&p, pp.Index(j))...)
		}
	}
	for i, t := range s.TLS {
		tp := sp.Child("tls").Index(i)
		for j, h := range t.Hosts {
			errs = append(errs, validateIngressHost(h, tp.Child("hosts").Index(j))...)
		}
		if t.SecretName != "" {
			for _, msg := range validation.IsDNS1123Subdomain(t.SecretName) {
				errs = append(errs, field.Invalid(tp.Child("secretName"), t.SecretName, msg))
			}
		}
	}
	return errs
}

func validateIngressHost(h string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if validation.IsValidIP(p, h) == nil {
		return field.ErrorList{field.Invalid(p, h, "must be a DNS name, not an IP address")}
	}
	var msgs []string
	if strings.Contains(h, "*") {
		msgs = validation.IsWildcardDNS1123Subdomain(h)
	} else {
		msgs = validation.IsDNS1123Subdomain(h)
	}
	for _, msg := range msgs {
		errs = append(errs, field.Invalid(p, h, msg))
	}
	return errs
}

var ingressPathTypes = []string{string(networkingv1.PathTypeExact), string(networkingv1.PathTypePrefix), string(networkingv1.PathTypeImplementationSpecific)}

func validateIngressPath(path *networkingv1.HTTPIngressPath, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case path.PathType == nil:
		errs = append(errs, field.Required(p.Child("pathType"), "pathType must be specified"))
	case !contains(ingressPathTypes, string(*path.PathType)):
		errs = append(errs, field.NotSupported(p.Child("pathType"), *path.PathType, ingressPathTypes))
	case *path.PathType == networkingv1.PathTypeImplementationSpecific:
		if path.Path != "" && !strings.HasPrefix(path.Path, "/") {
			errs = append(errs, field.Invalid(p.Child("path"), path.Path, "must be an absolute path"))
		}
	default:
		if !strings.HasPrefix(path.Path, "/") {
			errs = append(errs, field.Invalid(p.Child("path"), path.Path, "must be an absolute path"))
			break
		}
		for _, bad := range []string{"//", "/./", "/../", "%2f", "%2F"} {
			if strings.Contains(path.Path, bad) {
				errs = append(errs, field.Invalid(p.Child("path"), path.Path, "must not contain '"+bad+"'"))
			}
		}
		for _, bad := range []string{"/..", "/."} {
			if strings.HasSuffix(path.Path, bad) {
				errs = append(errs, field.Invalid(p.Child("path"), path.Path, "cannot end with '"+bad+"'"))
			}
		}
	}
	return append(errs, validateIngressBackend(&path.Backend, p.Child("backend"))...)
}

func validateIngressBackend(b *networkingv1.IngressBackend, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case b.Service != nil && b.Resource != nil:
		return field.ErrorList{field.Invalid(p, "", "cannot set both resource and service backends")}
	case b.Resource != nil:
		if b.Resource.Kind == "" {
			errs = append(errs, field.Required(p.Child("resource", "kind"), ""))
		}
		if b.Resource.Name == "" {
			errs = append(errs, field.Required(p.Child("resource", "name"), ""))
		}
		return errs
	case b.Service == nil:
		return field.ErrorList{field.Invalid(p, "", "resource or service backend is required")}
	}
	sp := p.Child("service")
	if b.Service.Name == "" {
		errs = append(errs, field.Required(sp.Child("name"), ""))
	} else {
		for _, msg := range validation.IsDNS1035Label(b.Service.Name) {
			errs = append(errs, field.Invalid(sp.Child("name"), b.Service.Name, msg))
		}
	}
	port := b.Service.Port
	pp := sp.Child("port")
	switch {
	case port.Name != "" && port.Number != 0:
		errs = append(errs, field.Invalid(pp, port, "cannot set both port name & port number"))
	case port.Name != "":
		for _, msg := range validation.IsValidPortName(port.Name) {
			errs = append(errs, field.Invalid(pp.Child("name"), port.Name, msg))
		}
	case port.Number != 0:
		for _, msg := range validation.IsValidPortNum(int(port.Number)) {
			errs = append(errs, field.Invalid(pp.Child("number"), port.Number, msg))
		}
	default:
		errs = append(errs, field.Required(pp, "port name or number is required"))
	}
	return errs
}

// IngressClass: cluster-scoped; the masters create the default class
// "skiff" (server/ingressclass.go).
func ingressClassKind() *Kind {
	return &Kind{
		GVK:           networkingv1.SchemeGroupVersion.WithKind("IngressClass"),
		Resource:      "ingressclasses",
		HasGeneration: true,
		newObject:     func() runtime.Object { return &networkingv1.IngressClass{} },
		newList:       func() runtime.Object { return &networkingv1.IngressClassList{} },
		validate: func(obj runtime.Object) field.ErrorList {
			c := obj.(*networkingv1.IngressClass)
			p := field.NewPath("spec", "controller")
			switch {
			case c.Spec.Controller == "":
				return field.ErrorList{field.Required(p, "")}
			case len(c.Spec.Controller) > 250:
				return field.ErrorList{field.TooLong(p, "", 250)}
			}
			var errs field.ErrorList
			domain, _, ok := strings.Cut(c.Spec.Controller, "/")
			if !ok {
				return field.ErrorList{field.Invalid(p, c.Spec.Controller, "must be a domain-prefixed path (such as \"acme.io/foo\")")}
			}
			for _, msg := range validation.IsDNS1123Subdomain(domain) {
				errs = append(errs, field.Invalid(p, c.Spec.Controller, msg))
			}
			return errs
		},
		validateUpdate: func(obj, old runtime.Object) field.ErrorList {
			c, o := obj.(*networkingv1.IngressClass), old.(*networkingv1.IngressClass)
			if c.Spec.Controller != o.Spec.Controller {
				return field.ErrorList{field.Invalid(field.NewPath("spec", "controller"), c.Spec.Controller, "field is immutable")}
			}
			return nil
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Controller", "string", "Controller that is responsible for handling this class", 0),
			col("Parameters", "string", "A reference to a resource with additional parameters", 0),
			ageColumn,
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			c := obj.(*networkingv1.IngressClass)
			params := "<none>"
			if p := c.Spec.Parameters; p != nil {
				params = p.Kind + "/" + p.Name
				if p.APIGroup != nil && *p.APIGroup != "" {
					params = p.Kind + "." + *p.APIGroup + "/" + p.Name
				}
			}
			return []any{c.Name, c.Spec.Controller, params, Age(c.CreationTimestamp, now)}
		},
	}
}
