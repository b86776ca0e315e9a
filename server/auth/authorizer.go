package auth

import (
	"fmt"
	"path"
	"strings"
)

// Authorizer is Skiff's authorization policy: built-in rules first, then
// RBAC (rbac.go) when enabled with WithRBAC:
//
//   - system:masters and skiff:servers may do everything;
//   - everyone, anonymous included, may GET the health and bootstrap
//     endpoints /livez, /readyz, /healthz, /version, /cacerts and their
//     sub-paths (as Kubernetes' system:public-info-viewer role);
//   - authenticated users may also GET discovery: /api, /apis, /openapi and
//     their sub-paths (as the system:discovery role);
//   - nodes (system:node:<name> in system:nodes) may do what a kubelet
//     needs, see authorizeNode;
//   - bootstrap-token users (system:bootstrappers) may create, get, list
//     and watch certificatesigningrequests;
//   - anything a Role or ClusterRole bound to the user allows (RBAC;
//     the leader bootstraps Kubernetes' default cluster roles);
//   - nothing else.
type Authorizer struct {
	nodes NodeObjects
	rbac  RBACObjects
}

// NewAuthorizer returns the built-in authorizer.
func NewAuthorizer() *Authorizer { return &Authorizer{} }

var (
	publicPaths    = []string{"/livez", "/readyz", "/healthz", "/version", "/cacerts"}
	discoveryPaths = []string{"/api", "/apis", "/openapi"}
)

// Authorize reports whether u may do what attrs describe and, when not, a
// reason worded as Kubernetes' RBAC denials. A nil user is anonymous.
func (a *Authorizer) Authorize(u *User, attrs Attributes) (bool, string) {
	if u == nil {
		u = &User{Name: UserAnonymous, Groups: []string{GroupUnauthenticated}}
	}
	if u.InGroup(GroupMasters) || u.InGroup(GroupSkiffServers) {
		return true, ""
	}
	if u.InGroup(GroupNodes) && a.authorizeNode(u, attrs) {
		return true, ""
	}
	if u.InGroup(GroupBootstrappers) && bootstrapperMay(attrs) {
		return true, ""
	}
	if attrs.Path != "" && attrs.Verb == "get" {
		p := path.Clean(attrs.Path)
		if underAny(p, publicPaths) {
			return true, ""
		}
		if u.InGroup(GroupAuthenticated) && underAny(p, discoveryPaths) {
			return true, ""
		}
	}
	if a.authorizeRBAC(u, attrs) {
		return true, ""
	}
	return false, denial(u, attrs)
}

// bootstrapperMay is what Kubernetes' system:node-bootstrapper role grants
// bootstrap-token users (agent tokens): create and follow certificate
// requests (admission keeps them to node client certificates). Built in,
// so that it holds from the cluster's first request on.
func bootstrapperMay(attrs Attributes) bool {
	switch attrs.Verb {
	case "create", "get", "list", "watch":
		return attrs.Path == "" && attrs.Group == "certificates.k8s.io" && attrs.Resource == "certificatesigningrequests" && attrs.Subresource == ""
	}
	return false
}

// underAny reports whether p is one of roots or below one of them.
func underAny(p string, roots []string) bool {
	for _, r := range roots {
		if p == r || strings.HasPrefix(p, r+"/") {
			return true
		}
	}
	return false
}

func denial(u *User, a Attributes) string {
	if a.Path != "" {
		return fmt.Sprintf("user %q cannot %s path %q", u.Name, a.Verb, a.Path)
	}
	resource := a.Resource
	if a.Subresource != "" {
		resource += "/" + a.Subresource
	}
	if a.Namespace != "" {
		return fmt.Sprintf("user %q cannot %s resource %q in API group %q in the namespace %q", u.Name, a.Verb, resource, a.Group, a.Namespace)
	}
	return fmt.Sprintf("user %q cannot %s resource %q in API group %q at the cluster scope", u.Name, a.Verb, resource, a.Group)
}
