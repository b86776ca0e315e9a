package apiserver

import (
	"encoding/json"
	"fmt"
	"mime"
	"net"
	"net/http"
	goruntime "runtime"
	"strings"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"

	"github.com/skiff-io/skiff/server/registry"
)

// serveNonResource serves discovery, /version and health paths.
func (s *APIServer) serveNonResource(req *request) {
	if req.r.Method != http.MethodGet && req.r.Method != http.MethodHead {
		s.writeError(req.w, req.r, notFoundPath())
		return
	}
	p := req.info.Parts
	switch {
	case len(p) == 1 && p[0] == "version":
		writeJSON(req.w, http.StatusOK, s.versionInfo())
	case len(p) == 1 && (p[0] == "healthz" || p[0] == "livez" || p[0] == "readyz"):
		req.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		req.w.WriteHeader(http.StatusOK)
		_, _ = req.w.Write([]byte("ok"))
	case len(p) == 1 && p[0] == "api":
		if v, ok := aggregatedVersion(req.r); ok {
			s.writeAggregated(req, v, true)
			return
		}
		writeJSON(req.w, http.StatusOK, &metav1.APIVersions{
			TypeMeta: metav1.TypeMeta{Kind: "APIVersions"},
			Versions: []string{"v1"},
			ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{{
				ClientCIDR: "0.0.0.0/0", ServerAddress: serverAddress(req.r),
			}},
		})
	case len(p) == 1 && p[0] == "apis":
		if v, ok := aggregatedVersion(req.r); ok {
			s.writeAggregated(req, v, false)
			return
		}
		list := &metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}}
		for _, g := range s.groups() {
			list.Groups = append(list.Groups, s.apiGroup(g))
		}
		writeJSON(req.w, http.StatusOK, list)
	case len(p) == 2 && p[0] == "apis":
		for _, g := range s.groups() {
			if g == p[1] {
				ag := s.apiGroup(g)
				ag.TypeMeta = metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"}
				writeJSON(req.w, http.StatusOK, &ag)
				return
			}
		}
		s.writeError(req.w, req.r, notFoundPath())
	case len(p) >= 2 && p[0] == "openapi":
		s.serveOpenAPI(req)
	case len(p) == 2 && p[0] == "api" && p[1] == "v1":
		s.writeResourceList(req, schema.GroupVersion{Version: "v1"})
	case len(p) == 3 && p[0] == "apis":
		s.writeResourceList(req, schema.GroupVersion{Group: p[1], Version: p[2]})
	default:
		s.writeError(req.w, req.r, notFoundPath())
	}
}

func (s *APIServer) versionInfo() *version.Info {
	return &version.Info{
		Major:        VersionMajor,
		Minor:        VersionMinor,
		GitVersion:   GitVersion,
		GitTreeState: "clean",
		GoVersion:    goruntime.Version(),
		Compiler:     goruntime.Compiler,
		Platform:     goruntime.GOOS + "/" + goruntime.GOARCH,
	}
}

// serverAddress is the host:port the client reached.
func serverAddress(r *http.Request) string {
	if _, _, err := net.SplitHostPort(r.Host); err == nil {
		return r.Host
	}
	return net.JoinHostPort(r.Host, "443")
}

// groups lists the served non-core group names in order.
func (s *APIServer) groups() []string {
	var out []string
	seen := map[string]bool{}
	for _, gv := range s.reg.GroupVersions() {
		if gv.Group != "" && !seen[gv.Group] {
			seen[gv.Group] = true
			out = append(out, gv.Group)
		}
	}
	return out
}

func (s *APIServer) apiGroup(group string) metav1.APIGroup {
	ag := metav1.APIGroup{Name: group}
	for _, gv := range s.reg.GroupVersions() {
		if gv.Group == group {
			v := metav1.GroupVersionForDiscovery{GroupVersion: gv.String(), Version: gv.Version}
			ag.Versions = append(ag.Versions, v)
			if ag.PreferredVersion.Version == "" {
				ag.PreferredVersion = v
			}
		}
	}
	return ag
}

// writeResourceList serves /api/v1 and /apis/<g>/<v>.
func (s *APIServer) writeResourceList(req *request, gv schema.GroupVersion) {
	kinds := s.reg.KindsIn(gv)
	if len(kinds) == 0 {
		s.writeError(req.w, req.r, notFoundPath())
		return
	}
	list := &metav1.APIResourceList{
		TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
		GroupVersion: gv.String(),
	}
	for _, k := range kinds {
		list.APIResources = append(list.APIResources, metav1.APIResource{
			Name:         k.Resource,
			SingularName: k.Singular,
			Namespaced:   k.Namespaced,
			Kind:         k.GVK.Kind,
			Verbs:        k.ResourceVerbs(),
			ShortNames:   k.ShortNames,
			Categories:   k.Categories,
		})
		for _, sub := range k.Subresources() {
			r := metav1.APIResource{
				Name:       k.Resource + "/" + sub.Name,
				Namespaced: k.Namespaced,
				Kind:       sub.GVK.Kind,
				Verbs:      sub.Verbs,
			}
			if sub.GVK.GroupVersion() != gv {
				r.Group, r.Version = sub.GVK.Group, sub.GVK.Version
			}
			list.APIResources = append(list.APIResources, r)
		}
	}
	writeJSON(req.w, http.StatusOK, list)
}

// aggregatedVersion reports whether the client prefers aggregated
// discovery (apidiscovery.k8s.io v2 or v2beta1) and which version.
func aggregatedVersion(r *http.Request) (string, bool) {
	for _, clause := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(clause))
		if err != nil {
			continue
		}
		if mt != "application/json" && mt != "*/*" && mt != "application/*" {
			continue
		}
		if params["as"] == "" {
			return "", false
		}
		if params["as"] == "APIGroupDiscoveryList" && params["g"] == apidiscoveryv2.SchemeGroupVersion.Group &&
			(params["v"] == "v2" || params["v"] == "v2beta1") {
			return params["v"], true
		}
	}
	return "", false
}

// writeAggregated serves aggregated discovery: the core group for /api,
// the others for /apis. v2beta1 has the same shape as v2.
func (s *APIServer) writeAggregated(req *request, v string, core bool) {
	list := &apidiscoveryv2.APIGroupDiscoveryList{
		TypeMeta: metav1.TypeMeta{Kind: "APIGroupDiscoveryList", APIVersion: apidiscoveryv2.SchemeGroupVersion.Group + "/" + v},
	}
	for _, gv := range s.reg.GroupVersions() {
		if (gv.Group == "") != core {
			continue
		}
		var g *apidiscoveryv2.APIGroupDiscovery
		for i := range list.Items {
			if list.Items[i].Name == gv.Group {
				g = &list.Items[i]
			}
		}
		if g == nil {
			list.Items = append(list.Items, apidiscoveryv2.APIGroupDiscovery{ObjectMeta: metav1.ObjectMeta{Name: gv.Group}})
			g = &list.Items[len(list.Items)-1]
		}
		g.Versions = append(g.Versions, apidiscoveryv2.APIVersionDiscovery{
			Version:   gv.Version,
			Resources: discoveryResources(s.reg.KindsIn(gv)),
			Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent,
		})
	}
	b, err := json.Marshal(list)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	req.w.Header().Set("Content-Type", fmt.Sprintf("application/json;g=%s;v=%s;as=APIGroupDiscoveryList", apidiscoveryv2.SchemeGroupVersion.Group, v))
	req.w.Header().Set("Vary", "Accept")
	req.w.WriteHeader(http.StatusOK)
	_, _ = req.w.Write(b)
}

func discoveryResources(kinds []*registry.Kind) []apidiscoveryv2.APIResourceDiscovery {
	out := make([]apidiscoveryv2.APIResourceDiscovery, 0, len(kinds))
	for _, k := range kinds {
		gvk := &metav1.GroupVersionKind{Group: k.GVK.Group, Version: k.GVK.Version, Kind: k.GVK.Kind}
		scope := apidiscoveryv2.ScopeCluster
		if k.Namespaced {
			scope = apidiscoveryv2.ScopeNamespace
		}
		r := apidiscoveryv2.APIResourceDiscovery{
			Resource:         k.Resource,
			ResponseKind:     gvk,
			Scope:            scope,
			SingularResource: k.Singular,
			Verbs:            k.ResourceVerbs(),
			ShortNames:       k.ShortNames,
			Categories:       k.Categories,
		}
		for _, sub := range k.Subresources() {
			r.Subresources = append(r.Subresources, apidiscoveryv2.APISubresourceDiscovery{
				Subresource:  sub.Name,
				ResponseKind: &metav1.GroupVersionKind{Group: sub.GVK.Group, Version: sub.GVK.Version, Kind: sub.GVK.Kind},
				Verbs:        sub.Verbs,
			})
		}
		out = append(out, r)
	}
	return out
}
