package proxy

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Inspect prints what the proxy of node would program, read from the API
// (`skiff services`): one line per service port with its ready endpoints,
// and with rules the nftables table in nft syntax. It needs no access to
// the node.
func Inspect(ctx context.Context, cs kubernetes.Interface, node string, balance Balance, rules bool, w io.Writer) error {
	svcs, err := cs.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	slices, err := cs.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	n := Node{Name: node}
	if node != "" {
		if nd, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); err == nil {
			n.PodCIDR, _ = netip.ParsePrefix(nd.Spec.PodCIDR)
		}
	}
	var sp []*corev1.Service
	for i := range svcs.Items {
		sp = append(sp, &svcs.Items[i])
	}
	var sl []*discoveryv1.EndpointSlice
	for i := range slices.Items {
		sl = append(sl, &slices.Items[i])
	}
	m := Build(sp, sl, n)
	if rules {
		_, err := io.WriteString(w, Rules(m, balance).String())
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE PORT\tCLUSTER IP\tNODE PORT\tPOLICY\tREADY ENDPOINTS")
	for i := range m.Ports {
		p := &m.Ports[i]
		np := "-"
		if p.NodePort != 0 {
			np = fmt.Sprint(p.NodePort)
		}
		var policy []string
		if p.AffinitySeconds > 0 {
			policy = append(policy, fmt.Sprintf("affinity=%ds", p.AffinitySeconds))
		}
		if p.InternalLocal {
			policy = append(policy, "internal=Local")
		}
		if p.ExternalLocal {
			policy = append(policy, "external=Local")
		}
		if len(policy) == 0 {
			policy = []string{"-"}
		}
		var eps []string
		for _, e := range p.Endpoints {
			s := e.String()
			if e.Local && node != "" {
				s += "(local)"
			}
			eps = append(eps, s)
		}
		if len(eps) == 0 {
			eps = []string{"<none: rejected>"}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.ID(), netip.AddrPortFrom(p.ClusterIP, p.Port), np,
			strings.Join(policy, ","), strings.Join(eps, " "))
	}
	return tw.Flush()
}
