// Package ingress is Skiff's built-in ingress controller, run by every
// agent (unless --disable ingress): it serves the Ingresses of the classes
// whose controller is ControllerName on the node's ports 80 and 443 with
// net/http/httputil.ReverseProxy, sending each request to a ready endpoint
// of the backend Service (from EndpointSlices, with the service proxy's
// readiness rules). See docs/ingress.md.
package ingress

import (
	"net"
	"sort"
	"strings"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
)

// ControllerName is spec.controller of the IngressClasses this
// controller serves.
const ControllerName = "skiff.io/ingress"

// DefaultClassName is the IngressClass the masters create.
const DefaultClassName = "skiff"

// Backend is a Service port an Ingress path leads to.
type Backend struct {
	Namespace, Service string
	Port               networkingv1.ServiceBackendPort
}

// route is one path of one host, from one Ingress.
type route struct {
	path    string
	exact   bool
	backend Backend
	created time.Time
	ingress string // namespace/name, to break ties
}

// Table maps a request's host and path to a backend. It is a pure
// function of the Ingresses (BuildTable), tested without a network.
type Table struct {
	exact    map[string][]route // host → routes, best first
	wildcard map[string][]route // "foo.com" for "*.foo.com"
	any      []route            // rules without a host
	def      *Backend
}

// BuildTable makes the table of ings, which are all of the controller's
// classes. Precedence (as the Ingress API defines it): a host matches its
// exact rules first, then a wildcard rule (one label: *.foo.com matches
// bar.foo.com, not foo.com nor a.bar.foo.com), then rules without a host;
// within a host, an Exact path before Prefix paths, longer prefixes before
// shorter ones, and on a tie the older Ingress. ImplementationSpecific is
// Prefix. With no match, the oldest Ingress's default backend answers.
func BuildTable(ings []*networkingv1.Ingress) *Table {
	t := &Table{exact: map[string][]route{}, wildcard: map[string][]route{}}
	sorted := append([]*networkingv1.Ingress(nil), ings...)
	sort.SliceStable(sorted, func(i, j int) bool { return older(sorted[i], sorted[j]) })
	for _, in := range sorted {
		if in.Spec.DefaultBackend != nil && in.Spec.DefaultBackend.Service != nil && t.def == nil {
			t.def = &Backend{Namespace: in.Namespace, Service: in.Spec.DefaultBackend.Service.Name, Port: in.Spec.DefaultBackend.Service.Port}
		}
		for _, r := range in.Spec.Rules {
			if r.HTTP == nil {
				continue
			}
			for _, p := range r.HTTP.Paths {
				if p.Backend.Service == nil {
					continue // resource backends are not served
				}
				rt := route{path: p.Path, backend: Backend{Namespace: in.Namespace, Service: p.Backend.Service.Name, Port: p.Backend.Service.Port},
					created: in.CreationTimestamp.Time, ingress: in.Namespace + "/" + in.Name}
				if p.PathType != nil && *p.PathType == networkingv1.PathTypeExact {
					rt.exact = true
				} else {
					rt.path = strings.TrimSuffix(rt.path, "/")
				}
				host := strings.ToLower(r.Host)
				switch {
				case host == "":
					t.any = append(t.any, rt)
				case strings.HasPrefix(host, "*."):
					t.wildcard[host[2:]] = append(t.wildcard[host[2:]], rt)
				default:
					t.exact[host] = append(t.exact[host], rt)
				}
			}
		}
	}
	order := func(rs []route) {
		sort.SliceStable(rs, func(i, j int) bool {
			a, b := rs[i], rs[j]
			if a.exact != b.exact {
				return a.exact
			}
			return len(a.path) > len(b.path) // stable: older Ingress first on a tie
		})
	}
	for _, rs := range t.exact {
		order(rs)
	}
	for _, rs := range t.wildcard {
		order(rs)
	}
	order(t.any)
	return t
}

func older(a, b *networkingv1.Ingress) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
}

// Match returns the backend of a request for host (a Host header, with or
// without a port) and path.
func (t *Table) Match(host, path string) (Backend, bool) {
	host = hostOnly(host)
	if rs, ok := t.exact[host]; ok {
		if b, ok := matchPath(rs, path); ok {
			return b, true
		}
	}
	if _, parent, ok := strings.Cut(host, "."); ok {
		if b, ok := matchPath(t.wildcard[parent], path); ok {
			return b, true
		}
	}
	if b, ok := matchPath(t.any, path); ok {
		return b, true
	}
	if t.def != nil {
		return *t.def, true
	}
	return Backend{}, false
}

// hostOnly lower-cases host and drops a port. Without a colon after the
// last "]" there is no port (SplitHostPort would fail, allocating its
// error on every request).
func hostOnly(host string) string {
	if strings.LastIndexByte(host, ':') > strings.LastIndexByte(host, ']') {
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

func matchPath(rs []route, path string) (Backend, bool) {
	if path == "" {
		path = "/"
	}
	for _, r := range rs {
		if r.exact {
			if path == r.path {
				return r.backend, true
			}
			continue
		}
		// Prefix: element-wise, /foo matches /foo, /foo/ and /foo/bar,
		// not /foobar; "/" (trimmed to "") matches every path.
		if r.path == "" || path == r.path || (len(path) > len(r.path) && path[len(r.path)] == '/' && strings.HasPrefix(path, r.path)) {
			return r.backend, true
		}
	}
	return Backend{}, false
}
