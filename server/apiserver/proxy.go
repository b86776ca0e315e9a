package apiserver

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/streaming/pkg/httpstream/wsstream"

	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/registry"
)

// Streaming subresources (pods/log, exec, attach, portforward) are proxied
// to the kubelet of the pod's node, at the address and port its Node
// reports, with the master's own client certificate (the kubelet admits
// masters and cluster admins). Upgrades (SPDY, WebSocket) pass through: the
// kubelet speaks both (WebSocket v5 for exec/attach and the SPDY-in-WebSocket
// tunnel for port-forward, as kubectl 1.30+ asks first; SPDY for older
// clients).

// kubeletPaths maps a subresource to the kubelet API path prefix.
var kubeletPaths = map[string]string{
	registry.SubLog:         "/containerLogs",
	registry.SubExec:        "/exec",
	registry.SubAttach:      "/attach",
	registry.SubPortForward: "/portforward",
}

// proxyToKubelet serves a streaming subresource of pod through its node's
// kubelet.
func (s *APIServer) proxyToKubelet(req *request, snap *state.Snapshot, pod *corev1.Pod) {
	sub := req.info.Subresource
	if pod.Spec.NodeName == "" {
		s.writeError(req.w, req.r, badRequest("pod %s does not have a host assigned", pod.Name))
		return
	}
	target, err := s.kubeletURL(snap, pod.Spec.NodeName)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	q := req.r.URL.Query()
	path := kubeletPaths[sub] + "/" + url.PathEscape(pod.Namespace) + "/" + url.PathEscape(pod.Name)
	if sub != registry.SubPortForward {
		container, err := podContainer(pod, q.Get("container"))
		if err != nil {
			s.writeError(req.w, req.r, err)
			return
		}
		q.Del("container")
		path += "/" + url.PathEscape(container)
	}
	if sub == registry.SubPortForward {
		for _, p := range q["ports"] {
			q.Add("port", p)
		}
		q.Del("ports")
	}
	target.Path = path
	target.RawQuery = q.Encode()
	if sub == registry.SubLog && wsstream.IsWebSocketRequest(req.r) {
		s.logOverWebSocket(req, target, pod)
		return
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = target
			pr.Out.Host = target.Host
			// The user's credentials stay here: the kubelet sees the
			// master.
			pr.Out.Header.Del("Authorization")
			for k := range pr.Out.Header {
				if strings.HasPrefix(strings.ToLower(k), "impersonate-") {
					pr.Out.Header.Del(k)
				}
			}
		},
		Transport:     s.cfg.KubeletTransport,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.log.Warn("kubelet proxy", "node", pod.Spec.NodeName, "pod", pod.Namespace+"/"+pod.Name, "subresource", sub, "err", err)
			s.writeError(w, r, apierrors.NewServiceUnavailable(fmt.Sprintf("error dialing the kubelet of node %s: %v", pod.Spec.NodeName, err)))
		},
	}
	proxy.ServeHTTP(req.w, req.r)
}

// logOverWebSocket serves pods/log to a WebSocket client, as
// kube-apiserver's log streamer does: the log is read from the kubelet
// over plain HTTP and sent as binary messages (subprotocol binary.k8s.io,
// or none) or base64 text ones (base64.binary.k8s.io); the socket closes
// when the log ends (at once without follow).
func (s *APIServer) logOverWebSocket(req *request, target *url.URL, pod *corev1.Pod) {
	out, err := http.NewRequestWithContext(req.r.Context(), http.MethodGet, target.String(), nil)
	if err != nil {
		s.writeError(req.w, req.r, apierrors.NewInternalError(err))
		return
	}
	resp, err := (&http.Client{Transport: s.cfg.KubeletTransport}).Do(out)
	if err != nil {
		s.log.Warn("kubelet proxy", "node", pod.Spec.NodeName, "pod", pod.Namespace+"/"+pod.Name, "subresource", registry.SubLog, "err", err)
		s.writeError(req.w, req.r, apierrors.NewServiceUnavailable(fmt.Sprintf("error dialing the kubelet of node %s: %v", pod.Spec.NodeName, err)))
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// The kubelet's refusal (a Status) goes back as it came.
		for _, h := range []string{"Content-Type", "Content-Length"} {
			if v := resp.Header.Get(h); v != "" {
				req.w.Header().Set(h, v)
			}
		}
		req.w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(req.w, resp.Body)
		return
	}
	// x/net/websocket hijacks the connection itself: hand it the writer
	// under the server's wrappers.
	w := req.w
	for {
		if _, ok := w.(http.Hijacker); ok {
			break
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			s.writeError(req.w, req.r, apierrors.NewInternalError(fmt.Errorf("the connection cannot be upgraded")))
			return
		}
		w = u.Unwrap()
	}
	if err := wsstream.NewReader(resp.Body, true, wsstream.NewDefaultReaderProtocols()).Copy(w, req.r); err != nil {
		s.log.Debug("pod log over websocket", "pod", pod.Namespace+"/"+pod.Name, "err", err)
	}
}

// kubeletURL is the kubelet endpoint of node: its InternalIP (else
// ExternalIP, else Hostname) and its daemonEndpoints port.
func (s *APIServer) kubeletURL(snap *state.Snapshot, nodeName string) (*url.URL, error) {
	kind, ok := s.reg.Lookup("", "v1", "nodes")
	if !ok {
		return nil, apierrors.NewInternalError(fmt.Errorf("nodes are not served"))
	}
	_, obj, err := getObject(snap, kind, "", nodeName)
	if err != nil {
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("node %s of the pod is not registered", nodeName))
	}
	node := obj.(*corev1.Node)
	host := ""
	for _, t := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP, corev1.NodeHostName} {
		for _, a := range node.Status.Addresses {
			if a.Type == t && host == "" {
				host = a.Address
			}
		}
	}
	if host == "" {
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("node %s reports no address", nodeName))
	}
	port := int(node.Status.DaemonEndpoints.KubeletEndpoint.Port)
	if port == 0 {
		port = 10250
	}
	return &url.URL{Scheme: "https", Host: net.JoinHostPort(host, strconv.Itoa(port))}, nil
}

// podContainer picks the container a request is for: the one named, else
// the pod's only container, else the default-container annotation.
func podContainer(pod *corev1.Pod, name string) (string, error) {
	var names []string
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	var all []string
	all = append(all, names...)
	for _, c := range pod.Spec.InitContainers {
		all = append(all, c.Name)
	}
	for _, c := range pod.Spec.EphemeralContainers {
		all = append(all, c.Name)
	}
	if name == "" {
		if def := pod.Annotations["kubectl.kubernetes.io/default-container"]; def != "" {
			name = def
		} else if len(names) == 1 {
			return names[0], nil
		} else {
			return "", badRequest("a container name must be specified for pod %s, choose one of: %v", pod.Name, names)
		}
	}
	for _, n := range all {
		if n == name {
			return name, nil
		}
	}
	return "", badRequest("container %s is not valid for pod %s", name, pod.Name)
}
