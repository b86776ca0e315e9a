package server

import (
	"bytes"
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/nettools/ingress"
	"github.com/skiff-io/skiff/server/controller/volume"
)

// nodeObjects lets the authorizer's node rules look at pods in the local
// state (as Kubernetes' Node authorizer keeps a graph of them).
type nodeObjects struct{ s *Server }

func (n nodeObjects) PodNode(namespace, name string) (string, bool) {
	o := n.s.fsm.Read().Get(state.Key{Resource: "pods", Namespace: namespace, Name: name})
	if o == nil {
		return "", false
	}
	var p struct {
		Spec struct {
			NodeName string `json:"nodeName"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(o.Data, &p); err != nil {
		return "", false
	}
	return p.Spec.NodeName, true
}

func (n nodeObjects) PodsOnNode(node, namespace string, fn func(*corev1.Pod) bool) {
	// Every pod start asks (its kube-root-ca.crt ConfigMap, its token):
	// skip, without decoding, the pods whose JSON cannot name this node.
	mark := []byte(`"nodeName":"` + node + `"`)
	n.s.fsm.Read().List("pods", namespace, "", func(o *state.Object) bool {
		if !bytes.Contains(o.Data, mark) {
			return true
		}
		var p corev1.Pod
		if err := json.Unmarshal(o.Data, &p); err != nil || p.Spec.NodeName != node {
			return true
		}
		return fn(&p)
	})
}

// IngressTLSSecret reports whether an Ingress of the built-in controller's
// classes (nettools/ingress.IsOurs) in namespace names the secret in
// spec.tls: the agents' ingress controller may read it.
func (n nodeObjects) IngressTLSSecret(namespace, name string) bool {
	st := n.s.fsm.Read()
	mine, def := map[string]bool{}, false
	st.List("networking.k8s.io/ingressclasses", "", "", func(o *state.Object) bool {
		var c networkingv1.IngressClass
		if json.Unmarshal(o.Data, &c) == nil && c.Spec.Controller == ingress.ControllerName {
			mine[c.Name] = true
			def = def || c.Annotations[ingress.AnnotationDefaultClass] == "true"
		}
		return true
	})
	mark := []byte(`"secretName":"` + name + `"`)
	found := false
	st.List("networking.k8s.io/ingresses", namespace, "", func(o *state.Object) bool {
		if !bytes.Contains(o.Data, mark) {
			return true
		}
		var in networkingv1.Ingress
		if json.Unmarshal(o.Data, &in) != nil || !ingress.IsOurs(&in, mine, def) {
			return true
		}
		for _, t := range in.Spec.TLS {
			found = found || t.SecretName == name
		}
		return !found
	})
	return found
}

// LocalPathVolumeNode returns the node of a volume the local-path
// provisioner made (auth.NodeVolumes).
func (n nodeObjects) LocalPathVolumeNode(name string) (string, bool) {
	o := n.s.fsm.Read().Get(state.Key{Resource: "persistentvolumes", Name: name})
	if o == nil {
		return "", false
	}
	var pv struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(o.Data, &pv); err != nil {
		return "", false
	}
	if pv.Metadata.Annotations[volume.AnnProvisionedBy] != volume.LocalPathProvisioner {
		return "", false
	}
	node, ok := pv.Metadata.Annotations[volume.AnnSelectedNode]
	return node, ok
}
