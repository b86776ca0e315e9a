// Package endpoints keeps the Endpoints of every Service with a selector:
// the IPs of the matching pods, ready ones in addresses and the others in
// notReadyAddresses (all ready with publishNotReadyAddresses), with each
// service port resolved per pod (named target ports by the pod's
// container ports) and pods grouped into subsets by port set.
package endpoints

import (
	"context"
	"log/slog"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/server/controller"
)

const component = "endpoint-controller"

// Annotations and labels as Kubernetes sets them.
const (
	lastChangeAnnotation = corev1.EndpointsLastChangeTriggerTime
	headlessLabel        = corev1.IsHeadlessService
)

// Controller reconciles Endpoints.
type Controller struct {
	cc     *controller.Context
	svcs   corelisters.ServiceLister
	pods   corelisters.PodLister
	eps    corelisters.EndpointsLister
	svcInf cache.SharedIndexInformer
	podInf cache.SharedIndexInformer
	epInf  cache.SharedIndexInformer
	queue  controller.Queue
	log    *slog.Logger
}

// New returns the controller.
func New(cc *controller.Context) *Controller {
	svc := cc.Informers.Core().V1().Services()
	pod := cc.Informers.Core().V1().Pods()
	ep := cc.Informers.Core().V1().Endpoints()
	c := &Controller{
		cc: cc, svcs: svc.Lister(), pods: pod.Lister(), eps: ep.Lister(),
		svcInf: svc.Informer(), podInf: pod.Informer(), epInf: ep.Informer(),
		queue: controller.NewQueue(component, 0), log: cc.Log(component),
	}
	controller.AddHandler(c.svcInf, controller.Handler(c.queue), c.log)
	controller.AddHandler(c.podInf, PodHandler(c.svcs, c.queue), c.log)
	controller.AddHandler(c.epInf, cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if key, ok := controller.KeyOf(obj); ok {
			c.queue.Add(key) // recreate if its service still wants it
		}
	}}, c.log)
	return c
}

// PodHandler enqueues the services selecting a pod (before and after a
// change of its labels) when it changes in a way endpoints show.
func PodHandler(svcs corelisters.ServiceLister, q controller.Queue) cache.ResourceEventHandlerFuncs {
	add := func(p *corev1.Pod) {
		for _, k := range controller.ServicesForPod(svcs, p) {
			q.Add(k)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { add(obj.(*corev1.Pod)) },
		UpdateFunc: func(oldObj, obj any) {
			old, p := oldObj.(*corev1.Pod), obj.(*corev1.Pod)
			if old.ResourceVersion == p.ResourceVersion {
				return
			}
			if !labels.Equals(old.Labels, p.Labels) {
				add(old)
			}
			if old.Status.PodIP != p.Status.PodIP || controller.IsPodReady(old) != controller.IsPodReady(p) ||
				(old.DeletionTimestamp == nil) != (p.DeletionTimestamp == nil) || old.Status.Phase != p.Status.Phase ||
				old.Spec.NodeName != p.Spec.NodeName || !labels.Equals(old.Labels, p.Labels) ||
				old.Spec.Hostname != p.Spec.Hostname || old.Spec.Subdomain != p.Spec.Subdomain {
				add(p)
			}
		},
		DeleteFunc: func(obj any) {
			if p, ok := controller.Unwrap[*corev1.Pod](obj); ok {
				add(p)
			}
		},
	}
}

// Run runs workers until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	if !controller.WaitForSync(ctx, c.svcInf, c.podInf, c.epInf) {
		return
	}
	controller.RunWorkers(ctx, c.queue, workers, c.log, c.sync)
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	svc, err := c.svcs.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		// The service is gone: so are its endpoints.
		if _, err := c.eps.Endpoints(ns).Get(name); err == nil {
			err := c.cc.Client.CoreV1().Endpoints(ns).Delete(ctx, name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				return err
			}
		}
		return nil
	}
	if err != nil {
		return err
	}
	if svc.Spec.Selector == nil || svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil // endpoints are the user's
	}
	pods, err := c.pods.Pods(ns).List(labels.SelectorFromValidatedSet(svc.Spec.Selector))
	if err != nil {
		return err
	}
	subsets := Subsets(svc, pods)
	cur, err := c.eps.Endpoints(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	want := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{}}, Subsets: subsets}
	for k, v := range svc.Labels {
		want.Labels[k] = v
	}
	if svc.Spec.ClusterIP == corev1.ClusterIPNone {
		want.Labels[headlessLabel] = ""
	}
	if cur == nil {
		want.Annotations = map[string]string{lastChangeAnnotation: time.Now().UTC().Format(time.RFC3339Nano)}
		_, err := c.cc.Client.CoreV1().Endpoints(ns).Create(ctx, want, metav1.CreateOptions{})
		if controller.IsNamespaceTerminating(err) {
			return nil
		}
		return err // AlreadyExists: the cache lags; retried
	}
	if apiequality.Semantic.DeepEqual(cur.Subsets, want.Subsets) && labelsEqual(cur.Labels, want.Labels) {
		return nil
	}
	out := cur.DeepCopy()
	out.Subsets, out.Labels = want.Subsets, want.Labels
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[lastChangeAnnotation] = time.Now().UTC().Format(time.RFC3339Nano)
	_, err = c.cc.Client.CoreV1().Endpoints(ns).Update(ctx, out, metav1.UpdateOptions{})
	return err
}

func labelsEqual(a, b map[string]string) bool {
	return labels.Equals(a, b) || (len(a) == 0 && len(b) == 0)
}

// Subsets computes a service's endpoint subsets from its pods: one subset
// per distinct set of resolved ports, addresses sorted by IP.
func Subsets(svc *corev1.Service, pods []*corev1.Pod) []corev1.EndpointSubset {
	type group struct {
		ports          []corev1.EndpointPort
		ready, unready []corev1.EndpointAddress
	}
	groups := map[string]*group{}
	var order []string
	for _, p := range pods {
		if !controller.ShouldPodBeInEndpoints(p, false) {
			continue
		}
		addr := corev1.EndpointAddress{
			IP: p.Status.PodIP, Hostname: controller.PodEndpointHostname(p, svc),
			NodeName:  ptr(p.Spec.NodeName),
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID},
		}
		var ports []corev1.EndpointPort
		for i := range svc.Spec.Ports {
			sp := &svc.Spec.Ports[i]
			n, err := controller.FindPort(p, sp)
			if err != nil {
				continue
			}
			ports = append(ports, corev1.EndpointPort{Name: sp.Name, Port: n, Protocol: sp.Protocol, AppProtocol: sp.AppProtocol})
		}
		if len(svc.Spec.Ports) > 0 && len(ports) == 0 {
			continue
		}
		sort.Slice(ports, func(i, j int) bool { return ports[i].Name < ports[j].Name })
		key := portsKey(ports)
		g, ok := groups[key]
		if !ok {
			g = &group{ports: ports}
			groups[key] = g
			order = append(order, key)
		}
		if svc.Spec.PublishNotReadyAddresses || controller.IsPodReady(p) {
			g.ready = append(g.ready, addr)
		} else {
			g.unready = append(g.unready, addr)
		}
	}
	sort.Strings(order)
	var out []corev1.EndpointSubset
	for _, k := range order {
		g := groups[k]
		sortAddrs(g.ready)
		sortAddrs(g.unready)
		out = append(out, corev1.EndpointSubset{Addresses: g.ready, NotReadyAddresses: g.unready, Ports: g.ports})
	}
	return out
}

func portsKey(ports []corev1.EndpointPort) string {
	k := ""
	for _, p := range ports {
		k += p.Name + "/" + string(p.Protocol) + "/" + strconv.Itoa(int(p.Port)) + ";"
	}
	return k
}

func sortAddrs(a []corev1.EndpointAddress) {
	sort.Slice(a, func(i, j int) bool {
		if a[i].IP != a[j].IP {
			return a[i].IP < a[j].IP
		}
		return a[i].TargetRef.Name < a[j].TargetRef.Name
	})
}

func ptr[T any](v T) *T { return &v }
