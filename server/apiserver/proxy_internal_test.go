package apiserver

import (
	"net/http/httptest"
	"testing"
)

// TestProxyRequestInfo: proxy URLs are authorized as the proxy
// subresource of the named object, whatever path follows.
func TestProxyRequestInfo(t *testing.T) {
	for path, want := range map[string][3]string{
		"/api/v1/namespaces/ns/services/https:web:443/proxy/a/b?x=1": {"services", "https:web:443", "proxy"},
		"/api/v1/namespaces/ns/pods/web:8080/proxy":                  {"pods", "web:8080", "proxy"},
		"/api/v1/nodes/n1/proxy/healthz":                             {"nodes", "n1", "proxy"},
		"/api/v1/namespaces/ns/pods/web/status/extra":                {"pods", "web", "status/extra"},
	} {
		info := parseRequestInfo(httptest.NewRequest("DELETE", path, nil))
		if got := [3]string{info.Resource, info.Name, info.Subresource}; got != want || info.Verb != "delete" {
			t.Errorf("%s: %v verb %s, want %v delete", path, got, info.Verb, want)
		}
	}
	for id, want := range map[string][3]string{
		"web": {"", "web", ""}, "web:80": {"", "web", "80"}, "https:web:443": {"https", "web", "443"}, "http:web:": {"http", "web", ""},
	} {
		s, n, p, ok := splitSchemeNamePort(id)
		if !ok || [3]string{s, n, p} != want {
			t.Errorf("%s: %q %q %q %v, want %v", id, s, n, p, ok, want)
		}
	}
	for _, bad := range []string{"ftp:web:21", "a:b:c:d", ":80", ""} {
		if _, _, _, ok := splitSchemeNamePort(bad); ok {
			t.Errorf("%q accepted", bad)
		}
	}
}
