package agent

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
)

// servePodProxy serves /podproxy/{ns}/{pod}/{scheme}/{port}/{path...}:
// the API server's pods/proxy and services/proxy reach a pod of this node
// through it (server/apiserver/proxy_resources.go), so masters need no
// route to pod addresses. Only masters and cluster admins may use it
// (requireAPIServer), and only towards this node's pods.
func (a *Agent) servePodProxy(w http.ResponseWriter, r *http.Request) {
	ns, name, scheme := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("scheme")
	port, err := strconv.ParseUint(r.PathValue("port"), 10, 16)
	if err != nil || port == 0 || (scheme != "http" && scheme != "https") {
		http.Error(w, "bad pod proxy target", http.StatusBadRequest)
		return
	}
	pod, ok := a.podByName(ns, name, "")
	if !ok {
		http.Error(w, fmt.Sprintf("pod %s/%s not found on node %s", ns, name, a.cfg.NodeName), http.StatusNotFound)
		return
	}
	ip := ""
	if pod.Spec.HostNetwork {
		ip = a.cfg.NodeIP
	} else if rt, err := a.podRuntime(r.Context(), pod.UID); err == nil {
		ip = rt.podIP()
	}
	if ip == "" {
		http.Error(w, fmt.Sprintf("pod %s/%s has no address", ns, name), http.StatusServiceUnavailable)
		return
	}
	// The path after the port, escaped as the client sent it.
	rest := "/"
	prefix := fmt.Sprintf("/podproxy/%s/%s/%s/%d", url.PathEscape(ns), url.PathEscape(name), scheme, port)
	if p := r.URL.EscapedPath(); strings.HasPrefix(p, prefix) && len(p) > len(prefix) {
		rest = p[len(prefix):]
	}
	target := &url.URL{Scheme: scheme, Host: net.JoinHostPort(ip, strconv.Itoa(int(port))), RawQuery: r.URL.RawQuery}
	target.RawPath = rest
	if p, err := url.PathUnescape(rest); err == nil {
		target.Path = p
	} else {
		target.Path = rest
	}
	// As kube-apiserver's pod proxy: a pod's certificate names no
	// address the proxy could check, unless the master says what to check
	// (an admission webhook's caBundle and service name).
	tlsCfg := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // see above
	verified := false
	if scheme == "https" && r.Header.Get(PodProxyCAHeader) != "" {
		cfg, err := podProxyVerify(r.Header.Get(PodProxyCAHeader), r.Header.Get(PodProxyServerNameHeader))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		tlsCfg, verified = cfg, true
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = target
			pr.Out.Host = target.Host
			pr.Out.Header.Del(PodProxyCAHeader)
			pr.Out.Header.Del(PodProxyServerNameHeader)
		},
		ModifyResponse: func(res *http.Response) error {
			if verified {
				res.Header.Set(PodProxyVerifiedHeader, "true")
			}
			return nil
		},
		Transport: &http.Transport{
			DisableKeepAlives: true,
			TLSClientConfig:   tlsCfg,
		},
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			a.log.Debug("pod proxy", "pod", ns+"/"+name, "port", port, "err", err)
			http.Error(w, fmt.Sprintf("error trying to reach pod %s/%s port %d: %v", ns, name, port, err), http.StatusBadGateway)
		},
	}
	proxy.ServeHTTP(w, r)
}

// Headers by which the master asks the pod proxy to verify an https pod's
// certificate (admission webhooks reached through a Service): the CA
// bundle (PEM, base64) and the server name; the answer carries
// PodProxyVerifiedHeader when the proxy did.
const (
	PodProxyCAHeader         = "X-Skiff-Pod-Proxy-Ca"
	PodProxyServerNameHeader = "X-Skiff-Pod-Proxy-Server-Name"
	PodProxyVerifiedHeader   = "X-Skiff-Pod-Proxy-Verified"
)

func podProxyVerify(caB64, serverName string) (*tls.Config, error) {
	pemData, err := base64.StdEncoding.DecodeString(caB64)
	if err != nil {
		return nil, fmt.Errorf("pod proxy CA header: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, errors.New("pod proxy CA header holds no PEM certificate")
	}
	if serverName == "" {
		return nil, errors.New("pod proxy server name header is empty")
	}
	return &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12}, nil
}
