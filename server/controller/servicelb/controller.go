// Package servicelb gives LoadBalancer Services and the built-in
// controller's Ingresses the addresses of nodes, as k3s's ServiceLB does:
// a LoadBalancer Service without spec.loadBalancerClass gets, in
// status.loadBalancer.ingress, the addresses of the Ready nodes of the
// pool (the nodes labelled svccontroller.skiff.io/enablelb=true if any
// node has that label, else every node), and the agents' service proxy
// makes its ports answer on those addresses; an Ingress of the built-in
// ingress controller's classes gets the addresses of the Ready nodes that
// run that controller (annotated by their agent). It runs on the leader.
package servicelb

import (
	"context"
	"log/slog"
	"slices"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/nettools/ingress"
	"github.com/skiff-io/skiff/server/controller"
)

const component = "service-lb-controller"

// LabelEnableLB chooses the pool: when any node has it "true", only those
// nodes carry LoadBalancer addresses.
const LabelEnableLB = "svccontroller.skiff.io/enablelb"

// Options tune the controller.
type Options struct {
	// DisableServiceLB leaves LoadBalancer Services alone (--disable
	// servicelb); Ingress status is still written.
	DisableServiceLB bool
	// Period between passes besides changes (10s if 0).
	Period time.Duration
}

// Controller writes the status addresses.
type Controller struct {
	cc   *controller.Context
	opts Options
	log  *slog.Logger
	infs []cache.SharedIndexInformer
	kick chan struct{}
}

// New returns the controller.
func New(cc *controller.Context, opts Options) *Controller {
	if opts.Period <= 0 {
		opts.Period = 10 * time.Second
	}
	f := cc.Informers
	c := &Controller{cc: cc, opts: opts, log: cc.Log(component), kick: make(chan struct{}, 1),
		infs: []cache.SharedIndexInformer{f.Core().V1().Nodes().Informer(), f.Core().V1().Services().Informer(),
			f.Networking().V1().Ingresses().Informer(), f.Networking().V1().IngressClasses().Informer()}}
	h := cache.ResourceEventHandlerFuncs{AddFunc: func(any) { c.trigger() }, UpdateFunc: func(any, any) { c.trigger() }, DeleteFunc: func(any) { c.trigger() }}
	for _, inf := range c.infs {
		_, _ = inf.AddEventHandler(h)
	}
	return c
}

func (c *Controller) trigger() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Run writes the addresses after every change and every period.
func (c *Controller) Run(ctx context.Context) {
	if !controller.WaitForSync(ctx, c.infs...) {
		return
	}
	t := time.NewTicker(c.opts.Period)
	defer t.Stop()
	for {
		c.Sync(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.kick:
		}
		select { // coalesce bursts
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Sync runs one pass.
func (c *Controller) Sync(ctx context.Context) {
	f := c.cc.Informers
	nodes, _ := f.Core().V1().Nodes().Lister().List(labels.Everything())
	if !c.opts.DisableServiceLB {
		pool := PoolAddresses(nodes)
		svcs, _ := f.Core().V1().Services().Lister().List(labels.Everything())
		for _, svc := range svcs {
			if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.LoadBalancerClass != nil || sameIPs(svc.Status.LoadBalancer.Ingress, pool) {
				continue
			}
			s := svc.DeepCopy()
			s.Status.LoadBalancer.Ingress = nil
			for _, ip := range pool {
				s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
			}
			if _, err := c.cc.Client.CoreV1().Services(s.Namespace).UpdateStatus(ctx, s, metav1.UpdateOptions{}); err != nil {
				c.log.Warn("update service status", "service", s.Namespace+"/"+s.Name, "err", err)
				continue
			}
			c.log.Info("load balancer addresses", "service", s.Namespace+"/"+s.Name, "addresses", pool)
		}
	}
	var serving []*corev1.Node
	for _, n := range nodes {
		if _, ok := n.Annotations[ingress.AnnotationNode]; ok {
			serving = append(serving, n)
		}
	}
	addrs := readyAddresses(serving)
	ings, _ := f.Networking().V1().Ingresses().Lister().List(labels.Everything())
	classes, _ := f.Networking().V1().IngressClasses().Lister().List(labels.Everything())
	for _, in := range ingress.Ours(ings, classes) {
		var cur []string
		for _, a := range in.Status.LoadBalancer.Ingress {
			cur = append(cur, a.IP)
		}
		if slices.Equal(cur, addrs) {
			continue
		}
		i := in.DeepCopy()
		i.Status.LoadBalancer.Ingress = nil
		for _, ip := range addrs {
			i.Status.LoadBalancer.Ingress = append(i.Status.LoadBalancer.Ingress, networkingv1.IngressLoadBalancerIngress{IP: ip})
		}
		if _, err := c.cc.Client.NetworkingV1().Ingresses(i.Namespace).UpdateStatus(ctx, i, metav1.UpdateOptions{}); err != nil {
			c.log.Warn("update ingress status", "ingress", i.Namespace+"/"+i.Name, "err", err)
		}
	}
}

func sameIPs(cur []corev1.LoadBalancerIngress, want []string) bool {
	if len(cur) != len(want) {
		return false
	}
	for i, a := range cur {
		if a.IP != want[i] || a.Hostname != "" {
			return false
		}
	}
	return true
}

// PoolAddresses are the addresses of the Ready nodes of the pool: the
// nodes labelled LabelEnableLB=true if any is, else all.
func PoolAddresses(nodes []*corev1.Node) []string {
	var labelled []*corev1.Node
	for _, n := range nodes {
		if n.Labels[LabelEnableLB] == "true" {
			labelled = append(labelled, n)
		}
	}
	if len(labelled) > 0 {
		nodes = labelled
	}
	return readyAddresses(nodes)
}

// readyAddresses: each Ready node's ExternalIP, else its InternalIP,
// sorted.
func readyAddresses(nodes []*corev1.Node) []string {
	var out []string
	for _, n := range nodes {
		ready := false
		for _, c := range n.Status.Conditions {
			ready = ready || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
		}
		if !ready {
			continue
		}
		var ext, in string
		for _, a := range n.Status.Addresses {
			switch {
			case a.Type == corev1.NodeExternalIP && ext == "":
				ext = a.Address
			case a.Type == corev1.NodeInternalIP && in == "":
				in = a.Address
			}
		}
		if ext != "" {
			out = append(out, ext)
		} else if in != "" {
			out = append(out, in)
		}
	}
	sort.Strings(out)
	return out
}
