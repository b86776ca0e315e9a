// Package endpointslicemirroring mirrors the Endpoints of Services
// without a selector (Endpoints a user or another controller wrote) to
// EndpointSlices, as kube-controller-manager's endpointslicemirroring
// controller does: ready addresses become ready endpoints and
// notReadyAddresses unready ones, subsets with the same ports and address
// family share slices of at most 100 endpoints, the slices carry the
// Endpoints' labels and annotations plus kubernetes.io/service-name and
// endpointslice.kubernetes.io/managed-by:
// endpointslicemirroring-controller.k8s.io, and are owned by the
// Endpoints. Endpoints labelled endpointslice.kubernetes.io/skip-mirror:
// "true", leader-election Endpoints, and those of a Service with a
// selector (the endpointslice controller's) are not mirrored.
package endpointslicemirroring

import (
	"context"
	"log/slog"
	"net/netip"
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/server/controller"
	"github.com/skiff-io/skiff/server/controller/endpointslice"
)

const (
	component = "endpointslicemirroring-controller"
	// ManagedBy is the managed-by label value of the slices it owns.
	ManagedBy = "endpointslicemirroring-controller.k8s.io"
	// MaxEndpointsPerSlice as kube-controller-manager's default.
	MaxEndpointsPerSlice = 100
	// skipMirrorLabel on an Endpoints keeps it from being mirrored.
	skipMirrorLabel = discoveryv1.LabelSkipMirror
	// leaderAnnotation marks the Endpoints old leader elections use.
	leaderAnnotation = "control-plane.alpha.kubernetes.io/leader"
)

var endpointsGVK = corev1.SchemeGroupVersion.WithKind("Endpoints")

// Controller mirrors Endpoints to EndpointSlices.
type Controller struct {
	cc     *controller.Context
	svcs   corelisters.ServiceLister
	eps    corelisters.EndpointsLister
	slices discoverylisters.EndpointSliceLister
	infs   []cache.SharedIndexInformer
	queue  controller.Queue
	log    *slog.Logger
}

// New returns the controller.
func New(cc *controller.Context) *Controller {
	svc := cc.Informers.Core().V1().Services()
	ep := cc.Informers.Core().V1().Endpoints()
	sl := cc.Informers.Discovery().V1().EndpointSlices()
	c := &Controller{
		cc: cc, svcs: svc.Lister(), eps: ep.Lister(), slices: sl.Lister(),
		queue: controller.NewQueue(component, 0), log: cc.Log(component),
	}
	c.infs = []cache.SharedIndexInformer{svc.Informer(), ep.Informer(), sl.Informer()}
	// Endpoints and Services share keys (namespace/name).
	controller.AddHandler(svc.Informer(), controller.Handler(c.queue), c.log)
	controller.AddHandler(ep.Informer(), controller.Handler(c.queue), c.log)
	controller.AddHandler(sl.Informer(), endpointslice.SliceHandler(ManagedBy, c.queue), c.log)
	return c
}

// Run runs workers until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	if !controller.WaitForSync(ctx, c.infs...) {
		return
	}
	controller.RunWorkers(ctx, c.queue, workers, c.log, c.sync)
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	existing, err := c.slices.EndpointSlices(ns).List(labels.SelectorFromSet(labels.Set{
		discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: ManagedBy,
	}))
	if err != nil {
		return err
	}
	var desired []*discoveryv1.EndpointSlice
	ep, err := c.eps.Endpoints(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	svc, serr := c.svcs.Services(ns).Get(name)
	if serr != nil && !apierrors.IsNotFound(serr) {
		return serr
	}
	if err == nil && serr == nil && svc.Spec.Selector == nil && shouldMirror(ep) {
		desired = Desired(ep)
	}
	return endpointslice.Reconcile(ctx, c.cc.Client, ns, existing, desired)
}

func shouldMirror(ep *corev1.Endpoints) bool {
	if ep.Labels[skipMirrorLabel] == "true" {
		return false
	}
	_, leader := ep.Annotations[leaderAnnotation]
	return !leader
}

// Desired computes the mirrored slices of ep: one group per (ports,
// address family), addresses de-duplicated within a group (a ready one
// wins), at most MaxEndpointsPerSlice endpoints a slice. Addresses that
// are not IPs are left out.
func Desired(ep *corev1.Endpoints) []*discoveryv1.EndpointSlice {
	type group struct {
		ports    []discoveryv1.EndpointPort
		addrType discoveryv1.AddressType
		eps      []discoveryv1.Endpoint
		seen     map[string]int
	}
	groups := map[string]*group{}
	var order []string
	add := func(ports []discoveryv1.EndpointPort, pkey string, a corev1.EndpointAddress, ready bool) {
		ip, err := netip.ParseAddr(a.IP)
		if err != nil {
			return
		}
		at := discoveryv1.AddressTypeIPv4
		if ip.Is6() && !ip.Is4In6() {
			at = discoveryv1.AddressTypeIPv6
		}
		key := string(at) + "|" + pkey
		g, ok := groups[key]
		if !ok {
			g = &group{ports: ports, addrType: at, seen: map[string]int{}}
			groups[key] = g
			order = append(order, key)
		}
		if i, dup := g.seen[a.IP]; dup {
			if ready {
				g.eps[i].Conditions.Ready = &ready
			}
			return
		}
		e := discoveryv1.Endpoint{Addresses: []string{a.IP}, Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef: a.TargetRef, NodeName: a.NodeName}
		if a.Hostname != "" {
			h := a.Hostname
			e.Hostname = &h
		}
		g.seen[a.IP] = len(g.eps)
		g.eps = append(g.eps, e)
	}
	for _, ss := range ep.Subsets {
		ports := make([]discoveryv1.EndpointPort, 0, len(ss.Ports))
		for _, p := range ss.Ports {
			name, port, proto := p.Name, p.Port, p.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			ports = append(ports, discoveryv1.EndpointPort{Name: &name, Port: &port, Protocol: &proto, AppProtocol: p.AppProtocol})
		}
		sort.Slice(ports, func(i, j int) bool { return *ports[i].Name < *ports[j].Name })
		pkey := ""
		for _, p := range ports {
			pkey += *p.Name + "/" + string(*p.Protocol) + "/" + strconv.Itoa(int(*p.Port)) + ";"
		}
		for _, a := range ss.Addresses {
			add(ports, pkey, a, true)
		}
		for _, a := range ss.NotReadyAddresses {
			add(ports, pkey, a, false)
		}
	}
	lbls := map[string]string{}
	for k, v := range ep.Labels {
		lbls[k] = v
	}
	lbls[discoveryv1.LabelServiceName] = ep.Name
	lbls[discoveryv1.LabelManagedBy] = ManagedBy
	var annots map[string]string
	for k, v := range ep.Annotations {
		if k == corev1.EndpointsLastChangeTriggerTime || k == corev1.LastAppliedConfigAnnotation {
			continue
		}
		if annots == nil {
			annots = map[string]string{}
		}
		annots[k] = v
	}
	sort.Strings(order)
	var out []*discoveryv1.EndpointSlice
	for _, k := range order {
		g := groups[k]
		for i := 0; i < len(g.eps); i += MaxEndpointsPerSlice {
			l := make(map[string]string, len(lbls))
			for k, v := range lbls {
				l[k] = v
			}
			var a map[string]string
			if annots != nil {
				a = make(map[string]string, len(annots))
				for k, v := range annots {
					a[k] = v
				}
			}
			out = append(out, &discoveryv1.EndpointSlice{
				ObjectMeta: metav1.ObjectMeta{
					GenerateName: ep.Name + "-", Namespace: ep.Namespace, Labels: l, Annotations: a,
					OwnerReferences: []metav1.OwnerReference{controller.OwnerRef(ep, endpointsGVK)},
				},
				AddressType: g.addrType, Ports: g.ports,
				Endpoints: g.eps[i:min(i+MaxEndpointsPerSlice, len(g.eps))],
			})
		}
	}
	return out
}
