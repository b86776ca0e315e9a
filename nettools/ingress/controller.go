package ingress

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/nettools/proxy"
)

// AnnotationNode marks the Nodes whose agent runs the controller, with
// its ports ("80,443"); the leader lists those nodes' addresses in the
// status of the Ingresses.
const AnnotationNode = "skiff.io/ingress-controller"

// AnnotationDefaultClass marks the default IngressClass.
const AnnotationDefaultClass = networkingv1.AnnotationIsDefaultIngressClass

// Config configures a Controller; cmd/skiff fills it from flags.
type Config struct {
	Client   kubernetes.Interface
	NodeName string
	// Address to listen on ("": all), HTTPPort and HTTPSPort (80 and 443).
	Address             string
	HTTPPort, HTTPSPort int
	// ResyncInterval re-reads the referenced Secrets (10s).
	ResyncInterval time.Duration
	Logger         *slog.Logger
}

// Controller serves one node's ingress traffic.
type Controller struct {
	cfg  Config
	log  *slog.Logger
	kick chan struct{}

	state atomic.Pointer[snapshot]
	rr    atomic.Uint64
	proxy *httputil.ReverseProxy

	httpLn, httpsLn net.Listener

	mu     sync.Mutex
	warned map[string]bool // ingress/secret pairs with an Event recorded
	// secrets caches what each Secret gave (a certificate or an error)
	// for ResyncInterval: a sync runs after every Service or slice change
	// in the cluster, and must not GET every TLS Secret each time.
	secrets map[string]cachedSecret
}

// snapshot is what a request reads: the route table, the ready endpoints
// of every service port, and the certificates by host.
type snapshot struct {
	table   *Table
	ports   map[serviceKey][]servicePort
	certs   map[string]*tls.Certificate // exact host, or "*.foo.com"
	defCert *tls.Certificate
}

type serviceKey struct{ namespace, name string }

// servicePort is a service port with the URL of each ready endpoint,
// made once per sync rather than once per request.
type servicePort struct {
	proxy.ServicePort
	targets []*url.URL // targets[i] is Endpoints[i]
}

// byService groups the service ports by service.
func byService(ports []proxy.ServicePort) map[serviceKey][]servicePort {
	m := map[serviceKey][]servicePort{}
	for _, p := range ports {
		sp := servicePort{ServicePort: p, targets: make([]*url.URL, len(p.Endpoints))}
		for i, e := range p.Endpoints {
			sp.targets[i] = &url.URL{Scheme: "http", Host: netip.AddrPortFrom(e.IP, e.Port).String()}
		}
		k := serviceKey{p.Namespace, p.Service}
		m[k] = append(m[k], sp)
	}
	return m
}

// targetKey is the context key of the endpoint URL ServeHTTP picked.
type targetKey struct{}

// bufferPool lends ReverseProxy its 32 KiB copy buffers: without one it
// allocates (and the runtime zeroes) a new buffer for every response,
// 70% of the bytes a proxied request allocated.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if buf, ok := b.p.Get().(*[]byte); ok {
		return *buf
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

// New makes a controller; Listen opens its ports.
func New(cfg Config) (*Controller, error) {
	if cfg.Client == nil || cfg.NodeName == "" {
		return nil, errors.New("ingress: Client and NodeName are required")
	}
	if cfg.HTTPPort == 0 {
		cfg.HTTPPort = 80
	}
	if cfg.HTTPSPort == 0 {
		cfg.HTTPSPort = 443
	}
	if cfg.ResyncInterval == 0 {
		cfg.ResyncInterval = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	def, err := selfSigned()
	if err != nil {
		return nil, err
	}
	c := &Controller{cfg: cfg, log: cfg.Logger.With("component", "ingress"), kick: make(chan struct{}, 1), warned: map[string]bool{},
		secrets: map[string]cachedSecret{}}
	c.state.Store(&snapshot{table: BuildTable(nil), defCert: def})
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        1000,
		MaxIdleConnsPerHost: 100,
		IdleConnTimeout:     90 * time.Second,
		// Pass bodies as they are: the client's Accept-Encoding decides.
		DisableCompression: true,
	}
	c.proxy = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(r.In.Context().Value(targetKey{}).(*url.URL))
			r.Out.Host = r.In.Host
			r.SetXForwarded()
		},
		Transport:  tr,
		BufferPool: &bufferPool{},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			c.log.Debug("backend error", "host", r.Host, "path", r.URL.Path, "err", err)
			http.Error(w, "502 bad gateway", http.StatusBadGateway)
		},
	}
	return c, nil
}

// Listen opens the HTTP and HTTPS ports.
func (c *Controller) Listen() error {
	var err error
	if c.httpLn, err = net.Listen("tcp", net.JoinHostPort(c.cfg.Address, strconv.Itoa(c.cfg.HTTPPort))); err != nil {
		return fmt.Errorf("ingress: %w", err)
	}
	if c.httpsLn, err = net.Listen("tcp", net.JoinHostPort(c.cfg.Address, strconv.Itoa(c.cfg.HTTPSPort))); err != nil {
		c.httpLn.Close()
		return fmt.Errorf("ingress: %w", err)
	}
	return nil
}

// Run watches Ingresses, IngressClasses, Services and EndpointSlices,
// serves on the listeners Listen opened, and returns when ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if c.httpLn == nil {
		if err := c.Listen(); err != nil {
			return err
		}
	}
	defer func() {
		// Closed by the servers' Shutdown too, unless Run ends before
		// they serve; either way the next Listen opens them again.
		_ = c.httpLn.Close()
		_ = c.httpsLn.Close()
		c.httpLn, c.httpsLn = nil, nil
	}()
	factory := informers.NewSharedInformerFactory(c.cfg.Client, 0)
	ingInf := factory.Networking().V1().Ingresses()
	classInf := factory.Networking().V1().IngressClasses()
	svcInf := factory.Core().V1().Services()
	sliceInf := factory.Discovery().V1().EndpointSlices()
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.trigger() },
		UpdateFunc: func(any, any) { c.trigger() },
		DeleteFunc: func(any) { c.trigger() },
	}
	for _, inf := range []cache.SharedIndexInformer{ingInf.Informer(), classInf.Informer(), svcInf.Informer(), sliceInf.Informer()} {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return err
		}
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), ingInf.Informer().HasSynced, classInf.Informer().HasSynced,
		svcInf.Informer().HasSynced, sliceInf.Informer().HasSynced) {
		return ctx.Err()
	}
	srv := &http.Server{Handler: c, ReadHeaderTimeout: 30 * time.Second, ErrorLog: slog.NewLogLogger(c.log.Handler(), slog.LevelDebug)}
	tsrv := &http.Server{Handler: c, ReadHeaderTimeout: 30 * time.Second, ErrorLog: srv.ErrorLog,
		TLSConfig: &tls.Config{GetCertificate: c.certificate, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(c.httpLn) }()
	go func() { errc <- tsrv.ServeTLS(c.httpsLn, "", "") }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = tsrv.Shutdown(sctx)
	}()
	c.publish(ctx, true)
	c.log.Info("ingress controller started", "http", c.httpLn.Addr().String(), "https", c.httpsLn.Addr().String())
	resync := time.NewTicker(c.cfg.ResyncInterval)
	defer resync.Stop()
	for {
		ings, _ := ingInf.Lister().List(labels.Everything())
		classes, _ := classInf.Lister().List(labels.Everything())
		svcs, _ := svcInf.Lister().List(labels.Everything())
		slices, _ := sliceInf.Lister().List(labels.Everything())
		c.sync(ctx, Ours(ings, classes), svcs, slices)
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return fmt.Errorf("ingress: serve: %w", err)
		case <-c.kick:
		case <-resync.C:
		}
		select { // coalesce bursts
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Controller) trigger() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Ours returns the Ingresses of the controller's classes: spec.
// ingressClassName naming a class whose controller is ControllerName (or
// the old kubernetes.io/ingress.class annotation naming it), or neither
// set while such a class is the default.
func Ours(ings []*networkingv1.Ingress, classes []*networkingv1.IngressClass) []*networkingv1.Ingress {
	mine := map[string]bool{}
	def := false
	for _, cl := range classes {
		if cl.Spec.Controller == ControllerName {
			mine[cl.Name] = true
			def = def || cl.Annotations[AnnotationDefaultClass] == "true"
		}
	}
	var out []*networkingv1.Ingress
	for _, in := range ings {
		if IsOurs(in, mine, def) {
			out = append(out, in)
		}
	}
	return out
}

// IsOurs reports whether in belongs to one of the classes mine (def: one
// of them is the default class).
func IsOurs(in *networkingv1.Ingress, mine map[string]bool, def bool) bool {
	switch {
	case in.Spec.IngressClassName != nil:
		return mine[*in.Spec.IngressClassName]
	case in.Annotations["kubernetes.io/ingress.class"] != "":
		return mine[in.Annotations["kubernetes.io/ingress.class"]]
	}
	return def
}

// sync builds a new snapshot: the table, the endpoints (proxy.Build, so
// readiness is the service proxy's), and the TLS certificates, read from
// the Secrets the Ingresses name.
func (c *Controller) sync(ctx context.Context, ings []*networkingv1.Ingress, svcs []*corev1.Service, slices []*discoveryv1.EndpointSlice) {
	m := proxy.Build(svcs, slices, proxy.Node{Name: c.cfg.NodeName})
	s := &snapshot{table: BuildTable(ings), ports: byService(m.Ports), certs: map[string]*tls.Certificate{},
		defCert: c.state.Load().defCert}
	// Older Ingresses first: the first certificate for a host wins.
	sorted := append([]*networkingv1.Ingress(nil), ings...)
	sortOlder(sorted)
	used := map[string]bool{}
	for _, in := range sorted {
		for _, t := range in.Spec.TLS {
			if t.SecretName == "" {
				continue
			}
			used[in.Namespace+"/"+t.SecretName] = true
			cert, err := c.secretCert(ctx, in.Namespace, t.SecretName)
			if err != nil {
				c.warn(ctx, in, t.SecretName, err)
				continue
			}
			c.mu.Lock()
			delete(c.warned, string(in.UID)+"/"+t.SecretName) // warn again if it goes
			c.mu.Unlock()
			for _, h := range t.Hosts {
				if _, dup := s.certs[hostOnly(h)]; !dup {
					s.certs[hostOnly(h)] = cert
				}
			}
		}
	}
	c.mu.Lock()
	for k := range c.secrets {
		if !used[k] {
			delete(c.secrets, k)
		}
	}
	c.mu.Unlock()
	c.state.Store(s)
}

type cachedSecret struct {
	cert *tls.Certificate
	err  error
	at   time.Time
}

// secretCert returns the certificate of the Secret namespace/name, read
// again when the cached answer is older than ResyncInterval.
func (c *Controller) secretCert(ctx context.Context, namespace, name string) (*tls.Certificate, error) {
	key := namespace + "/" + name
	c.mu.Lock()
	cached, ok := c.secrets[key]
	c.mu.Unlock()
	if ok && time.Since(cached.at) < c.cfg.ResyncInterval {
		return cached.cert, cached.err
	}
	cert, err := c.readSecretCert(ctx, namespace, name)
	c.mu.Lock()
	c.secrets[key] = cachedSecret{cert: cert, err: err, at: time.Now()}
	c.mu.Unlock()
	return cert, err
}

func (c *Controller) readSecretCert(ctx context.Context, namespace, name string) (*tls.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	sec, err := c.cfg.Client.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return nil, fmt.Errorf("secret %s/%s: %w", namespace, name, err)
	}
	return &cert, nil
}

// warn records a Warning Event on the Ingress once per Secret (and logs).
func (c *Controller) warn(ctx context.Context, in *networkingv1.Ingress, secret string, err error) {
	key := string(in.UID) + "/" + secret
	c.mu.Lock()
	done := c.warned[key]
	c.warned[key] = true
	c.mu.Unlock()
	if done {
		return
	}
	reason, msg := "InvalidTLSSecret", fmt.Sprintf("TLS secret %s: %v; serving the default certificate", secret, err)
	if apierrors.IsNotFound(err) {
		reason, msg = "SecretNotFound", fmt.Sprintf("TLS secret %s/%s not found; serving the default certificate", in.Namespace, secret)
	}
	c.log.Warn("ingress TLS secret", "ingress", in.Namespace+"/"+in.Name, "secret", secret, "err", err)
	now := metav1.NewTime(time.Now())
	// One name per Ingress and Secret: the agents of every node see the
	// same problem, and the first one's Event stands for all.
	h := fnv.New64a()
	h.Write([]byte(key))
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", in.Name, h.Sum64()), Namespace: in.Namespace},
		InvolvedObject: corev1.ObjectReference{Kind: "Ingress", APIVersion: "networking.k8s.io/v1", Namespace: in.Namespace,
			Name: in.Name, UID: in.UID, ResourceVersion: in.ResourceVersion},
		Reason: reason, Message: msg, Type: corev1.EventTypeWarning, Count: 1,
		FirstTimestamp: now, LastTimestamp: now,
		Source: corev1.EventSource{Component: "skiff-ingress", Host: c.cfg.NodeName},
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.cfg.Client.CoreV1().Events(in.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		c.log.Warn("record event", "ingress", in.Namespace+"/"+in.Name, "err", err)
		c.mu.Lock()
		delete(c.warned, key) // try again next sync
		c.mu.Unlock()
	}
}

// certificate picks the certificate by SNI: an exact host, then a
// wildcard, then the default self-signed one.
func (c *Controller) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	s := c.state.Load()
	name := hostOnly(hello.ServerName)
	if cert, ok := s.certs[name]; ok {
		return cert, nil
	}
	if _, parent, ok := cutLabel(name); ok {
		if cert, ok := s.certs["*."+parent]; ok {
			return cert, nil
		}
	}
	return s.defCert, nil
}

// ServeHTTP routes a request and proxies it to a ready endpoint (round
// robin); 404 without a matching rule, 503 without a ready endpoint.
func (c *Controller) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := c.state.Load()
	b, ok := s.table.Match(r.Host, r.URL.Path)
	if !ok {
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	targets := s.targets(b)
	if len(targets) == 0 {
		http.Error(w, "503 service unavailable: no ready endpoints", http.StatusServiceUnavailable)
		return
	}
	t := targets[c.rr.Add(1)%uint64(len(targets))]
	c.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), targetKey{}, t)))
}

// targets are the URLs of the ready endpoints of the backend's service
// port.
func (s *snapshot) targets(b Backend) []*url.URL {
	for _, p := range s.ports[serviceKey{b.Namespace, b.Service}] {
		if p.Protocol != corev1.ProtocolTCP {
			continue
		}
		if (b.Port.Name != "" && p.PortName == b.Port.Name) || (b.Port.Number != 0 && int32(p.Port) == b.Port.Number) {
			return p.targets
		}
	}
	return nil
}

// publish sets (on) or removes the node annotation that tells the leader
// this node serves Ingresses.
func (c *Controller) publish(ctx context.Context, on bool) {
	if err := PublishNode(ctx, c.cfg.Client, c.cfg.NodeName, on, fmt.Sprintf("%d,%d", c.cfg.HTTPPort, c.cfg.HTTPSPort)); err != nil {
		c.log.Warn("publish node annotation", "err", err)
	}
}

// PublishNode sets or removes AnnotationNode on the node (an agent started
// with --disable ingress removes it).
func PublishNode(ctx context.Context, cs kubernetes.Interface, node string, on bool, ports string) error {
	var v any
	if on {
		v = ports
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{AnnotationNode: v}}})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		_, err = cs.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{})
		if err == nil || !apierrors.IsNotFound(err) {
			return err
		}
		select { // not registered yet
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}
