package apiserver

import (
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	proxyutil "k8s.io/apimachinery/pkg/util/proxy"

	"github.com/skiff-io/skiff/fsm/state"
)

// The proxy subresources: pods/[scheme:]NAME[:PORT]/proxy/PATH,
// services/[scheme:]NAME[:PORT]/proxy/PATH and nodes/NAME/proxy/PATH,
// every method, upgrades and streaming included.
//
// Every hop to a pod goes through the kubelet of the pod's node
// (/podproxy on its server, agent/kubeletserver.go), which reaches the
// pod on its bridge: a master need not route to pod addresses (one with
// --disable-agent does not, nor one whose pod network is not up yet).
// A service endpoint without a node (a hand-made EndpointSlice) is dialed
// from the master itself, and only if its address is neither loopback,
// link-local nor unspecified. nodes/proxy goes to the node's kubelet, as
// kube-apiserver's does.

// handleProxy serves the proxy subresource of pods, services and nodes.
func (s *APIServer) handleProxy(req *request) {
	if s.cfg.KubeletTransport == nil {
		s.writeError(req.w, req.r, apierrors.NewServiceUnavailable("the kubelets are not reachable from this server"))
		return
	}
	scheme, name, port, ok := splitSchemeNamePort(req.info.Name)
	if !ok {
		s.writeError(req.w, req.r, badRequest("invalid %s proxy target %q", req.kind.Resource, req.info.Name))
		return
	}
	// The proxied path: what follows .../<name>/proxy, kept escaped.
	path := req.r.URL.EscapedPath()
	marker := "/" + url.PathEscape(req.info.Name) + "/proxy"
	i := strings.Index(path, marker)
	if i < 0 {
		marker = "/" + req.info.Name + "/proxy"
		i = strings.Index(path, marker)
	}
	rest, prefix, bare := "/", path, true
	if i >= 0 {
		prefix = path[:i+len(marker)]
		if len(path) > i+len(marker) {
			rest, bare = path[i+len(marker):], false
		}
	}
	snap, err := s.store.Read(req.r.Context(), false, 0)
	if err != nil {
		s.writeError(req.w, req.r, storeError(err))
		return
	}
	_, obj, err := getObject(snap, req.kind, req.namespace(), name)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	var target *url.URL
	transport := s.cfg.KubeletTransport
	switch o := obj.(type) {
	case *corev1.Node:
		// Only the kubelet's port is served (kube-apiserver also dials
		// other ports of the node's address).
		if target, err = s.kubeletURL(snap, o.Name); err == nil {
			if port != "" && port != target.Port() || scheme == "http" {
				err = badRequest("nodes/proxy reaches only the kubelet (https, port %s)", target.Port())
			}
		}
		if err == nil {
			setPath(target, rest)
		}
	case *corev1.Pod:
		target, err = s.podProxyURL(snap, o, scheme, port, rest)
	case *corev1.Service:
		var direct bool
		target, direct, err = s.serviceProxyURL(snap, o, scheme, port, rest)
		if direct {
			transport = directTransport()
		}
	default:
		err = notFoundPath()
	}
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	// .../proxy with nothing after it: a GET or HEAD is redirected to
	// .../proxy/ (301), as kube-apiserver's proxy handler does, so that
	// relative links in the answer resolve under the proxy path.
	if bare && (req.r.Method == http.MethodGet || req.r.Method == http.MethodHead) {
		loc := req.r.URL.EscapedPath() + "/"
		if req.r.URL.RawQuery != "" {
			loc += "?" + req.r.URL.RawQuery
		}
		req.w.Header().Set("Location", loc)
		req.w.WriteHeader(http.StatusMovedPermanently)
		return
	}
	target.RawQuery = req.r.URL.RawQuery
	// As kube-apiserver's proxy (UpgradeAwareHandler with WrapTransport):
	// X-Forwarded-* headers, and absolute links in HTML answers and
	// redirects rewritten under the proxy path.
	transport = &proxyutil.Transport{PathPrepend: prefix, RoundTripper: transport}
	s.reverseProxy(req, target, transport)
}

// reverseProxy forwards the request to target, without the user's
// credentials.
func (s *APIServer) reverseProxy(req *request, target *url.URL, transport http.RoundTripper) {
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = target
			pr.Out.Host = target.Host
			pr.Out.Header.Del("Authorization")
			for k := range pr.Out.Header {
				if strings.HasPrefix(strings.ToLower(k), "impersonate-") {
					pr.Out.Header.Del(k)
				}
			}
		},
		Transport:     transport,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.log.Warn("proxy", "resource", req.kind.Resource, "namespace", req.info.Namespace, "name", req.info.Name, "err", err)
			s.writeError(w, r, apierrors.NewServiceUnavailable(fmt.Sprintf("error trying to reach %s %q: %v", req.kind.Singular, req.info.Name, err)))
		},
	}
	p.ServeHTTP(req.w, req.r)
}

// splitSchemeNamePort parses [scheme:]name[:port] as kube-apiserver does;
// scheme is http, https or empty.
func splitSchemeNamePort(id string) (scheme, name, port string, ok bool) {
	parts := strings.Split(id, ":")
	switch len(parts) {
	case 1:
		name = parts[0]
	case 2:
		name, port = parts[0], parts[1]
	case 3:
		scheme, name, port = parts[0], parts[1], parts[2]
	default:
		return "", "", "", false
	}
	if scheme != "" && scheme != "http" && scheme != "https" {
		return "", "", "", false
	}
	return scheme, name, port, name != ""
}

// podProxyURL is the kubelet URL that forwards to port of pod: the given
// port, else the first container port, else the scheme's own port (80, or
// 443 for https), as kube-apiserver, whose URL then has no port.
func (s *APIServer) podProxyURL(snap *state.Snapshot, pod *corev1.Pod, scheme, port, rest string) (*url.URL, error) {
	if port == "" {
		for _, c := range pod.Spec.Containers {
			if len(c.Ports) > 0 {
				port = strconv.Itoa(int(c.Ports[0].ContainerPort))
				break
			}
		}
	}
	if port == "" {
		port = "80"
		if scheme == "https" {
			port = "443"
		}
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return nil, badRequest("invalid port %q for pod %s: a port number is needed", port, pod.Name)
	}
	if pod.Spec.NodeName == "" || pod.Status.PodIP == "" {
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("pod %s has no address yet", pod.Name))
	}
	return s.kubeletPodURL(snap, pod.Spec.NodeName, pod.Namespace, pod.Name, scheme, int(n), rest)
}

// kubeletPodURL is the URL of node's kubelet that forwards to a port of
// one of its pods.
func (s *APIServer) kubeletPodURL(snap *state.Snapshot, node, namespace, pod, scheme string, port int, rest string) (*url.URL, error) {
	u, err := s.kubeletURL(snap, node)
	if err != nil {
		return nil, err
	}
	if scheme == "" {
		scheme = "http"
	}
	setPath(u, "/podproxy/"+url.PathEscape(namespace)+"/"+url.PathEscape(pod)+"/"+scheme+"/"+strconv.Itoa(port)+rest)
	return u, nil
}

// serviceProxyURL picks a random ready endpoint of the service's port (by
// name or number, as kube-apiserver's ResolveEndpoint) and returns the
// URL that reaches it, and whether that URL is dialed directly.
func (s *APIServer) serviceProxyURL(snap *state.Snapshot, svc *corev1.Service, scheme, port, rest string) (*url.URL, bool, error) {
	portName := port
	if n, err := strconv.Atoi(port); err == nil {
		found := false
		for _, sp := range svc.Spec.Ports {
			if int(sp.Port) == n {
				portName, found = sp.Name, true
				break
			}
		}
		if !found {
			return nil, false, apierrors.NewServiceUnavailable(fmt.Sprintf("no service port %d found for service %q", n, svc.Name))
		}
	}
	kind, ok := s.reg.Lookup(discoveryv1.GroupName, "v1", "endpointslices")
	if !ok {
		return nil, false, apierrors.NewInternalError(fmt.Errorf("endpointslices are not served"))
	}
	type candidate struct {
		ip, node, pod string
		port          int
	}
	var (
		cands []candidate
		derr  error
	)
	snap.List(kind.StorageResource(), svc.Namespace, "", func(o *state.Object) bool {
		obj, err := kind.Decode(o)
		if err != nil {
			derr = err
			return false
		}
		es := obj.(*discoveryv1.EndpointSlice)
		if es.Labels[discoveryv1.LabelServiceName] != svc.Name {
			return true
		}
		for _, p := range es.Ports {
			pn := ""
			if p.Name != nil {
				pn = *p.Name
			}
			if pn != portName || p.Port == nil {
				continue
			}
			for _, ep := range es.Endpoints {
				if ep.Conditions.Ready != nil && !*ep.Conditions.Ready || len(ep.Addresses) == 0 {
					continue
				}
				c := candidate{ip: ep.Addresses[0], port: int(*p.Port)}
				if ep.NodeName != nil && ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
					c.node, c.pod = *ep.NodeName, ep.TargetRef.Name
				}
				cands = append(cands, c)
			}
		}
		return true
	})
	if derr != nil {
		return nil, false, apierrors.NewInternalError(derr)
	}
	if len(cands) == 0 {
		return nil, false, apierrors.NewServiceUnavailable(fmt.Sprintf("no endpoints available for service %q", svc.Name))
	}
	c := cands[rand.IntN(len(cands))]
	if c.node != "" {
		u, err := s.kubeletPodURL(snap, c.node, svc.Namespace, c.pod, scheme, c.port, rest)
		return u, false, err
	}
	ip := net.ParseIP(c.ip)
	if ip == nil || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsUnspecified() || ip.IsMulticast() {
		return nil, false, apierrors.NewBadRequest(fmt.Sprintf("address not allowed: %s", c.ip))
	}
	if scheme == "" {
		scheme = "http"
	}
	u := &url.URL{Scheme: scheme, Host: net.JoinHostPort(c.ip, strconv.Itoa(c.port))}
	setPath(u, rest)
	return u, true, nil
}

// setPath sets u's path from its escaped form.
func setPath(u *url.URL, escaped string) {
	p, err := url.PathUnescape(escaped)
	if err != nil {
		p = escaped
	}
	u.Path, u.RawPath = p, escaped
}

// directTransport dials a service endpoint from the master. As
// kube-apiserver's service proxy, it does not verify an https backend's
// certificate (it has no name to verify it against).
func directTransport() http.RoundTripper {
	return &http.Transport{
		Proxy:             nil,
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // as kube-apiserver's service proxy
	}
}
