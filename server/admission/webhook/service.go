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

// serviceURL resolves clientConfig.service to a ready endpoint of the
// Service's port, from its EndpointSlices, and returns the URL that dials
// it and the TLS server name to verify, <service>.<namespace>.svc. The
// master dials the endpoint's address itself: it needs a route to the pod
// network (a master with an embedded agent has one).
func (d *Dispatcher) serviceURL(snap *state.Snapshot, ref *admissionregistrationv1.ServiceReference) (*url.URL, string, error) {
	port := int32(443)
	if ref.Port != nil {
		port = *ref.Port
	}
	svcKind, ok := d.reg.Lookup("", "v1", "services")
	if !ok {
		return nil, "", errors.New("services are not served")
	}
	o := snap.Get(svcKind.Key(ref.Namespace, ref.Name))
	if o == nil {
		return nil, "", fmt.Errorf("service %s/%s not found", ref.Namespace, ref.Name)
	}
	obj, err := svcKind.Decode(o)
	if err != nil {
		return nil, "", err
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
		return nil, "", fmt.Errorf("service %s/%s has no port %d", ref.Namespace, ref.Name, port)
	}
	esKind, ok := d.reg.Lookup(discoveryv1.GroupName, "v1", "endpointslices")
	if !ok {
		return nil, "", errors.New("endpointslices are not served")
	}
	var (
		cands []string
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
				cands = append(cands, net.JoinHostPort(ep.Addresses[0], strconv.Itoa(int(*p.Port))))
			}
		}
		return true
	})
	if derr != nil {
		return nil, "", derr
	}
	if len(cands) == 0 {
		return nil, "", fmt.Errorf("no ready endpoints for service %s/%s port %d", ref.Namespace, ref.Name, port)
	}
	u := &url.URL{Scheme: "https", Host: cands[rand.IntN(len(cands))], Path: "/"}
	if ref.Path != nil {
		u.Path = *ref.Path
	}
	return u, ref.Name + "." + ref.Namespace + ".svc", nil
}
