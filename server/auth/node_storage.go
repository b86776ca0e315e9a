package auth

import corev1 "k8s.io/api/core/v1"

// NodeVolumes answers the node storage rules' question about a stored
// PersistentVolume; NodeObjects implementations may provide it.
type NodeVolumes interface {
	// LocalPathVolumeNode returns the node of the local-path volume name
	// (its volume.kubernetes.io/selected-node annotation) when the
	// built-in local-path provisioner made it.
	LocalPathVolumeNode(name string) (node string, found bool)
}

// authorizeNodeStorage holds the node rules for storage:
//
//   - persistentvolumeclaims: get, only those a pod bound to the node
//     uses (as Kubernetes' Node authorizer);
//   - persistentvolumes: get, list and watch (the kubelet reads the
//     volume of a claim; the local-path reclaimer watches for released
//     volumes of its node); delete, only local-path volumes of this node
//     (agent/localpath removes the directory, then the volume).
func (a *Authorizer) authorizeNodeStorage(node string, attrs Attributes) bool {
	v := attrs.Verb
	if attrs.Subresource != "" {
		return false
	}
	switch attrs.Resource {
	case "persistentvolumeclaims":
		return v == "get" && a.claimOnNode(node, attrs.Namespace, attrs.Name)
	case "persistentvolumes":
		switch v {
		case "get", "list", "watch":
			return true
		case "delete":
			nv, ok := a.nodes.(NodeVolumes)
			if !ok || attrs.Name == "" {
				return false
			}
			n, found := nv.LocalPathVolumeNode(attrs.Name)
			return found && n == node
		}
	}
	return false
}

// claimOnNode reports whether a pod bound to node uses the claim
// namespace/name.
func (a *Authorizer) claimOnNode(node, namespace, name string) bool {
	if a.nodes == nil || name == "" {
		return false
	}
	found := false
	a.nodes.PodsOnNode(node, namespace, func(p *corev1.Pod) bool {
		for _, vol := range p.Spec.Volumes {
			if vol.PersistentVolumeClaim != nil && vol.PersistentVolumeClaim.ClaimName == name {
				found = true
			}
		}
		return !found
	})
	return found
}
