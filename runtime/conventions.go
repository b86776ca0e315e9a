package runtime

import "path"

// CgroupRoot is the cgroup (in every hierarchy) under which a node's pods
// run, one child per QoS class.
const CgroupRoot = "/skiff/kubepods"

// PodCgroupParent is the cgroup of a pod for
// PodSandboxConfig.Linux.CgroupParent: CgroupRoot/<qos>/pod<uid>, with qos
// the pod's QoS class (Guaranteed, Burstable or BestEffort, any case).
// A sandbox without a CgroupParent is put under burstable.
func PodCgroupParent(qosClass, podUID string) string {
	q := "burstable"
	switch qosClass {
	case "Guaranteed", "guaranteed":
		q = "guaranteed"
	case "BestEffort", "besteffort":
		q = "besteffort"
	}
	return path.Join(CgroupRoot, q, "pod"+podUID)
}
