package apiserver

import (
	"net/http"
	"strings"

	"github.com/skiff-io/skiff/server/auth"
)

// requestInfo is what the URL and method say about a request, parsed as
// kube-apiserver's RequestInfoFactory does.
type requestInfo struct {
	// IsResource is false for discovery, /version and other paths.
	IsResource  bool
	Path        string
	Verb        string
	APIPrefix   string // "api" or "apis"
	Group       string
	Version     string
	Namespace   string
	Resource    string
	Name        string
	Subresource string
	// Parts are the path segments of a non-resource request.
	Parts []string
}

// namespaceSubresources are the subresources of a namespace object that
// would otherwise read as a resource inside the namespace.
var namespaceSubresources = map[string]bool{"status": true, "finalize": true}

func parseRequestInfo(r *http.Request) *requestInfo {
	info := &requestInfo{Path: r.URL.Path, Verb: strings.ToLower(r.Method)}
	parts := splitPath(r.URL.Path)
	info.Parts = parts
	if len(parts) == 0 {
		return info
	}
	var rest []string
	switch parts[0] {
	case "api":
		if len(parts) < 3 {
			return info
		}
		info.APIPrefix, info.Version, rest = "api", parts[1], parts[2:]
	case "apis":
		if len(parts) < 4 {
			return info
		}
		info.APIPrefix, info.Group, info.Version, rest = "apis", parts[1], parts[2], parts[3:]
	default:
		return info
	}
	info.IsResource = true

	watchPrefix := false
	if rest[0] == "watch" {
		watchPrefix = true
		rest = rest[1:]
	}
	if len(rest) > 0 && rest[0] == "namespaces" {
		if len(rest) > 1 {
			info.Namespace = rest[1]
			if len(rest) > 2 && !namespaceSubresources[rest[2]] {
				rest = rest[2:]
			}
		}
	}
	switch {
	case len(rest) == 0:
		info.IsResource = false
		return info
	case len(rest) > 3 && rest[2] == "proxy":
		// <resource>/<name>/proxy/<path...> (proxy.go): the path is the
		// proxied one's, authorized as the proxy subresource.
		info.Resource, info.Name, info.Subresource = rest[0], rest[1], rest[2]
	case len(rest) > 3:
		// Other deeper paths are not served.
		info.Resource = rest[0]
		info.Subresource = strings.Join(rest[2:], "/")
		info.Name = rest[1]
	default:
		info.Resource = rest[0]
		if len(rest) > 1 {
			info.Name = rest[1]
		}
		if len(rest) > 2 {
			info.Subresource = rest[2]
		}
	}
	// /api/v1/namespaces/foo keeps Namespace "foo" for authorization, as
	// kube-apiserver does; handlers use request.namespace().

	switch r.Method {
	case http.MethodGet, http.MethodHead:
		switch {
		case watchPrefix || isTrue(r.URL.Query().Get("watch")):
			info.Verb = "watch"
		case info.Name != "":
			info.Verb = "get"
		default:
			info.Verb = "list"
		}
	case http.MethodPost:
		info.Verb = "create"
	case http.MethodPut:
		info.Verb = "update"
	case http.MethodPatch:
		info.Verb = "patch"
	case http.MethodDelete:
		info.Verb = "delete"
		if info.Name == "" {
			info.Verb = "deletecollection"
		}
	}
	return info
}

// splitPath splits a URL path into its non-empty segments.
func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

func isTrue(s string) bool { return s == "1" || strings.EqualFold(s, "true") }

// attributes returns the authorization attributes of the request.
func (info *requestInfo) attributes() auth.Attributes {
	if !info.IsResource {
		return auth.Attributes{Verb: info.Verb, Path: info.Path}
	}
	return auth.Attributes{
		Verb:        info.Verb,
		Group:       info.Group,
		Resource:    info.Resource,
		Subresource: info.Subresource,
		Namespace:   info.Namespace,
		Name:        info.Name,
	}
}
