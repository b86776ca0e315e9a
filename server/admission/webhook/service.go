package webhook

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/skiff-io/skiff/fsm/state"
)

// serviceEndpoint resolves clientConfig.service to a ready endpoint of the
// Service's port, from its EndpointSlices, with the TLS server name to
// verify, <service>.<namespace>.svc. An endpoint that is a pod on a node is
// reached through that node's kubelet when the dispatcher has a kubelet
// transport (call.go); others are dialed directly.
// endpoint is a ready endpoint of a webhook's Service.
type endpoint struct {
	ip         string
	port       int
	namespace  string
	node, pod  string
	path       string
	serverName string
}

func (d *Dispatcher) serviceEndpoint(snap *state.Snapshot, ref *admissionregistrationv1.ServiceReference) (*endpoint, error) {
	port := int32(443)
	if ref.Port != nil {
		port = *ref.Port
	}
	svcKind, ok := d.reg.Lookup("", "v1", "services")
	if !ok {
		return nil, errors.New("services are not served")
	}
	o := snap.Get(svcKind.Key(ref.Namespace, ref.Name))
	if o == nil {
		return nil, fmt.Errorf("service %s/%s not found", ref.Namespace, ref.Name)
	}
	obj, err := svcKind.Decode(o)
	if err != nil {
		return nil, err
	}
	svc := obj.(*corev1.Service)
	portName, found := "", false
	for _, sp := range svc.Spec.Ports {
		if sp.Port == port {
			portName, found = sp.Name, true
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("service %s/%s has no port %d", ref.Namespace, ref.Name, port)
	}
	esKind, ok := d.reg.Lookup(discoveryv1.GroupName, "v1", "endpointslices")
	if !ok {
		return nil, errors.New("endpointslices are not served")
	}
	var (
		cands []endpoint
		derr  error
	)
	snap.List(esKind.StorageResource(), ref.Namespace, "", func(o *state.Object) bool {
		obj, err := esKind.Decode(o)
		if err != nil {
			derr = err
			return false
		}
		es := obj.(*discoveryv1.EndpointSlice)
		if es.Labels[discoveryv1.LabelServiceName] != ref.Name {
			return true
		}
		for _, p := range es.Ports {
			if p.Port == nil || (p.Name == nil && portName != "") || (p.Name != nil && *p.Name != portName) {
				continue
			}
			for _, ep := range es.Endpoints {
				if (ep.Conditions.Ready != nil && !*ep.Conditions.Ready) || len(ep.Addresses) == 0 {
					continue
				}
				c := endpoint{ip: ep.Addresses[0], port: int(*p.Port), namespace: ref.Namespace}
				if ep.NodeName != nil && ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
					c.node, c.pod = *ep.NodeName, ep.TargetRef.Name
				}
				cands = append(cands, c)
			}
		}
		return true
	})
	if derr != nil {
		return nil, derr
	}
	if len(cands) == 0 {
		return nil, fmt.Errorf("no ready endpoints for service %s/%s port %d", ref.Namespace, ref.Name, port)
	}
	c := cands[rand.IntN(len(cands))]
	c.path, c.serverName = "/", ref.Name+"."+ref.Namespace+".svc"
	if ref.Path != nil {
		c.path = *ref.Path
	}
	return &c, nil
}

// kubeletPodURL is the URL of the pod proxy (/podproxy) of node's kubelet
// that forwards to https://pod:port/path (agent/podproxy.go), so that a
// master needs no route to pod addresses.
func (d *Dispatcher) kubeletPodURL(snap *state.Snapshot, ep *endpoint) (*url.URL, error) {
	nodeKind, ok := d.reg.Lookup("", "v1", "nodes")
	if !ok {
		return nil, errors.New("nodes are not served")
	}
	o := snap.Get(nodeKind.Key("", ep.node))
	if o == nil {
		return nil, fmt.Errorf("node %s of the webhook's pod is not registered", ep.node)
	}
	obj, err := nodeKind.Decode(o)
	if err != nil {
		return nil, err
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
		return nil, fmt.Errorf("node %s reports no address", ep.node)
	}
	port := int(node.Status.DaemonEndpoints.KubeletEndpoint.Port)
	if port == 0 {
		port = 10250
	}
	u := &url.URL{Scheme: "https", Host: net.JoinHostPort(host, strconv.Itoa(port))}
	u.Path = "/podproxy/" + ep.namespace + "/" + ep.pod + "/https/" + strconv.Itoa(ep.port) + ep.path
	return u, nil
}
