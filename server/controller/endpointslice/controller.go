// Package endpointslice keeps the EndpointSlices of every Service with a
// selector: one endpoint per matching pod (ready, serving and terminating
// conditions, node, zone, hostname), pods grouped by their resolved ports
// and at most 100 endpoints per slice, labelled with the service name and
// managed-by endpointslice-controller.k8s.io, owned by the service (the
// garbage collector removes them with it).
package endpointslice

import (
	"context"
	"log/slog"
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
	"github.com/skiff-io/skiff/server/controller/endpoints"
)

const (
	component = "endpointslice-controller"
	// ManagedBy is the managed-by label value of the slices it owns.
	ManagedBy = "endpointslice-controller.k8s.io"
	// MaxEndpointsPerSlice as kube-controller-manager's default.
	MaxEndpointsPerSlice = 100
)

var serviceGVK = corev1.SchemeGroupVersion.WithKind("Service")

// Controller reconciles EndpointSlices.
type Controller struct {
	cc       *controller.Context
	svcs     corelisters.ServiceLister
	pods     corelisters.PodLister
	nodes    corelisters.NodeLister
	slices   discoverylisters.EndpointSliceLister
	infs     []cache.SharedIndexInformer
	sliceInf cache.SharedIndexInformer
	queue    controller.Queue
	log      *slog.Logger
}

// New returns the controller.
func New(cc *controller.Context) *Controller {
	svc := cc.Informers.Core().V1().Services()
	pod := cc.Informers.Core().V1().Pods()
	node := cc.Informers.Core().V1().Nodes()
	sl := cc.Informers.Discovery().V1().EndpointSlices()
	c := &Controller{
		cc: cc, svcs: svc.Lister(), pods: pod.Lister(), nodes: node.Lister(), slices: sl.Lister(),
		sliceInf: sl.Informer(),
		queue:    controller.NewQueue(component, 0), log: cc.Log(component),
	}
	c.infs = []cache.SharedIndexInformer{svc.Informer(), pod.Informer(), node.Informer(), sl.Informer()}
	controller.AddHandler(svc.Informer(), controller.Handler(c.queue), c.log)
	controller.AddHandler(pod.Informer(), endpoints.PodHandler(c.svcs, c.queue), c.log)
	controller.AddHandler(sl.Informer(), SliceHandler(ManagedBy, c.queue), c.log)
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
	svc, err := c.svcs.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil // the garbage collector deletes its slices
	}
	if err != nil {
		return err
	}
	var desired []*discoveryv1.EndpointSlice
	if svc.Spec.Selector != nil && svc.Spec.Type != corev1.ServiceTypeExternalName {
		pods, err := c.pods.Pods(ns).List(labels.SelectorFromValidatedSet(svc.Spec.Selector))
		if err != nil {
			return err
		}
		desired = c.desired(svc, pods)
	}
	return Reconcile(ctx, c.cc.Client, ns, existing, desired)
}

// desired computes the slices of svc: endpoints grouped by resolved ports,
// sorted by pod name, at most MaxEndpointsPerSlice each.
func (c *Controller) desired(svc *corev1.Service, pods []*corev1.Pod) []*discoveryv1.EndpointSlice {
	type group struct {
		ports []discoveryv1.EndpointPort
		eps   []discoveryv1.Endpoint
	}
	groups := map[string]*group{}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	for _, p := range pods {
		if !controller.ShouldPodBeInEndpoints(p, true) {
			continue
		}
		var ports []discoveryv1.EndpointPort
		for i := range svc.Spec.Ports {
			sp := &svc.Spec.Ports[i]
			n, err := controller.FindPort(p, sp)
			if err != nil {
				continue
			}
			name, proto := sp.Name, sp.Protocol
			ports = append(ports, discoveryv1.EndpointPort{Name: &name, Port: &n, Protocol: &proto, AppProtocol: sp.AppProtocol})
		}
		if len(svc.Spec.Ports) > 0 && len(ports) == 0 {
			continue
		}
		sort.Slice(ports, func(i, j int) bool { return *ports[i].Name < *ports[j].Name })
		key := ""
		for _, pt := range ports {
			key += *pt.Name + "/" + string(*pt.Protocol) + "/" + strconv.Itoa(int(*pt.Port)) + ";"
		}
		g, ok := groups[key]
		if !ok {
			g = &group{ports: ports}
			groups[key] = g
		}
		serving := controller.IsPodReady(p)
		terminating := p.DeletionTimestamp != nil
		ready := (serving || svc.Spec.PublishNotReadyAddresses) && !terminating
		ep := discoveryv1.Endpoint{
			Addresses:  []string{p.Status.PodIP},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &terminating},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID},
			NodeName:   ptr(p.Spec.NodeName),
		}
		if h := controller.PodEndpointHostname(p, svc); h != "" {
			ep.Hostname = &h
		}
		if n, err := c.nodes.Get(p.Spec.NodeName); err == nil {
			if z, ok := n.Labels[corev1.LabelTopologyZone]; ok {
				ep.Zone = &z
			}
		}
		g.eps = append(g.eps, ep)
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	lbls := map[string]string{}
	for k, v := range svc.Labels {
		lbls[k] = v
	}
	lbls[discoveryv1.LabelServiceName] = svc.Name
	lbls[discoveryv1.LabelManagedBy] = ManagedBy
	if svc.Spec.ClusterIP == corev1.ClusterIPNone {
		lbls[corev1.IsHeadlessService] = ""
	}
	addrType := discoveryv1.AddressTypeIPv4
	if len(svc.Spec.IPFamilies) > 0 && svc.Spec.IPFamilies[0] == corev1.IPv6Protocol {
		addrType = discoveryv1.AddressTypeIPv6
	}
	mk := func(ports []discoveryv1.EndpointPort, eps []discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
		l := map[string]string{}
		for k, v := range lbls {
			l[k] = v
		}
		return &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				GenerateName: svc.Name + "-", Namespace: svc.Namespace, Labels: l,
				OwnerReferences: []metav1.OwnerReference{controller.OwnerRef(svc, serviceGVK)},
			},
			AddressType: addrType, Endpoints: eps, Ports: ports,
		}
	}
	var out []*discoveryv1.EndpointSlice
	for _, k := range keys {
		g := groups[k]
		for i := 0; i < len(g.eps); i += MaxEndpointsPerSlice {
			out = append(out, mk(g.ports, g.eps[i:min(i+MaxEndpointsPerSlice, len(g.eps))]))
		}
	}
	if len(out) == 0 {
		// A Service with no endpoints still has one slice, a placeholder
		// without endpoints or ports, as kube-controller-manager's
		// reconciler makes.
		out = append(out, mk(nil, nil))
	}
	return out
}

func ptr[T any](v T) *T { return &v }
