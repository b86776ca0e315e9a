package agent

import (
	"os"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	skiffruntime "github.com/skiff-io/skiff/runtime"
)

// sandboxConfig builds the CRI config of the pod's sandbox.
func (a *Agent) sandboxConfig(pod *corev1.Pod, attempt uint32) (*runtimeapi.PodSandboxConfig, error) {
	labels := map[string]string{}
	for k, v := range pod.Labels {
		labels[k] = v
	}
	labels[labelPodName] = pod.Name
	labels[labelPodNamespace] = pod.Namespace
	labels[labelPodUID] = string(pod.UID)
	ann := map[string]string{}
	for k, v := range pod.Annotations {
		ann[k] = v
	}
	ann[annPodGracePeriod] = strconv.FormatInt(gracePeriod(pod), 10)

	hostname, err := a.podHostname(pod)
	if err != nil {
		return nil, err
	}
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: pod.Name, Namespace: pod.Namespace, Uid: string(pod.UID), Attempt: attempt},
		Hostname:     hostname,
		LogDirectory: a.cfg.podLogDir(pod.Namespace, pod.Name, string(pod.UID)),
		DnsConfig:    a.dnsConfig(pod),
		Labels:       labels,
		Annotations:  ann,
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent:    podCgroupParent(pod),
			SecurityContext: sandboxSecurityContext(pod),
			Sysctls:         podSysctls(pod),
			Resources:       podResources(pod),
		},
	}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.HostPort == 0 {
				continue
			}
			cfg.PortMappings = append(cfg.PortMappings, &runtimeapi.PortMapping{
				Protocol: protocolOf(p.Protocol), ContainerPort: p.ContainerPort, HostPort: p.HostPort, HostIp: p.HostIP,
			})
		}
	}
	return cfg, nil
}

// podHostname is the pod's hostname: spec.hostname or the pod name (the
// node's for host-network pods), at most 63 characters.
func (a *Agent) podHostname(pod *corev1.Pod) (string, error) {
	if pod.Spec.HostNetwork {
		return os.Hostname()
	}
	h := pod.Name
	if pod.Spec.Hostname != "" {
		h = pod.Spec.Hostname
	}
	if len(h) > 63 {
		h = h[:63]
	}
	return h, nil
}

func protocolOf(p corev1.Protocol) runtimeapi.Protocol {
	switch p {
	case corev1.ProtocolUDP:
		return runtimeapi.Protocol_UDP
	case corev1.ProtocolSCTP:
		return runtimeapi.Protocol_SCTP
	}
	return runtimeapi.Protocol_TCP
}

// qosClass computes the pod's QoS class (Guaranteed, Burstable,
// BestEffort) from its containers' requests and limits.
func qosClass(pod *corev1.Pod) corev1.PodQOSClass {
	if pod.Status.QOSClass != "" {
		return pod.Status.QOSClass
	}
	anySet, guaranteed := false, true
	all := append(append([]corev1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, c := range all {
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, hasReq := c.Resources.Requests[r]
			lim, hasLim := c.Resources.Limits[r]
			if hasReq || hasLim {
				anySet = true
			}
			if !hasLim || (hasReq && req.Cmp(lim) != 0) {
				guaranteed = false
			}
		}
	}
	switch {
	case !anySet:
		return corev1.PodQOSBestEffort
	case guaranteed:
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}

// podCgroupParent is the pod's absolute cgroup path, under its QoS class.
func podCgroupParent(pod *corev1.Pod) string {
	return skiffruntime.PodCgroupParent(string(qosClass(pod)), string(pod.UID))
}

const (
	cpuPeriod       = 100000 // µs
	minShares       = 2
	sharesPerCPU    = 1024
	milliCPUToCPU   = 1000
	guaranteedOOM   = -997
	besteffortOOM   = 1000
	burstableMinOOM = 2
	burstableMaxOOM = 999
)

// containerResources maps requests and limits to cgroup settings as the
// kubelet does: cpu shares from the request, a CFS quota from the limit,
// the memory limit, and an OOM score by QoS class.
func containerResources(pod *corev1.Pod, c *corev1.Container) *runtimeapi.LinuxContainerResources {
	r := &runtimeapi.LinuxContainerResources{CpuPeriod: cpuPeriod}
	cpuReq := c.Resources.Requests.Cpu()
	cpuLim := c.Resources.Limits.Cpu()
	if cpuReq.IsZero() && !cpuLim.IsZero() {
		cpuReq = cpuLim
	}
	r.CpuShares = milliToShares(cpuReq.MilliValue())
	if !cpuLim.IsZero() {
		q := cpuLim.MilliValue() * cpuPeriod / milliCPUToCPU
		if q < 1000 {
			q = 1000
		}
		r.CpuQuota = q
	}
	if mem := c.Resources.Limits.Memory(); !mem.IsZero() {
		r.MemoryLimitInBytes = mem.Value()
	}
	r.OomScoreAdj = oomScoreAdj(pod, c)
	return r
}

func milliToShares(milli int64) int64 {
	if milli == 0 {
		return minShares
	}
	s := milli * sharesPerCPU / milliCPUToCPU
	if s < minShares {
		return minShares
	}
	return s
}

// oomScoreAdj follows the kubelet's policy: guaranteed -997, best effort
// 1000, burstable between, lower for larger memory requests.
func oomScoreAdj(pod *corev1.Pod, c *corev1.Container) int64 {
	switch qosClass(pod) {
	case corev1.PodQOSGuaranteed:
		return guaranteedOOM
	case corev1.PodQOSBestEffort:
		return besteffortOOM
	}
	memReq := c.Resources.Requests.Memory().Value()
	capacity := machineMemory()
	if capacity <= 0 || memReq <= 0 {
		return burstableMaxOOM
	}
	adj := 1000 - (1000*memReq)/capacity
	if adj < burstableMinOOM {
		adj = burstableMinOOM
	}
	if adj > burstableMaxOOM {
		adj = burstableMaxOOM
	}
	return adj
}

// podResources are the pod cgroup's limits: the sum of the containers'
// limits when every container has one.
func podResources(pod *corev1.Pod) *runtimeapi.LinuxContainerResources {
	var cpu, mem resource.Quantity
	allCPU, allMem := true, true
	for _, c := range pod.Spec.Containers {
		if l, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
			cpu.Add(l)
		} else {
			allCPU = false
		}
		if l, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
			mem.Add(l)
		} else {
			allMem = false
		}
	}
	for _, c := range pod.Spec.InitContainers {
		if l, ok := c.Resources.Limits[corev1.ResourceCPU]; ok && l.Cmp(cpu) > 0 {
			cpu = l
		}
		if l, ok := c.Resources.Limits[corev1.ResourceMemory]; ok && l.Cmp(mem) > 0 {
			mem = l
		}
	}
	r := &runtimeapi.LinuxContainerResources{CpuPeriod: cpuPeriod}
	var req int64
	for _, c := range pod.Spec.Containers {
		req += c.Resources.Requests.Cpu().MilliValue()
	}
	r.CpuShares = milliToShares(req)
	if allCPU && !cpu.IsZero() {
		r.CpuQuota = cpu.MilliValue() * cpuPeriod / milliCPUToCPU
	}
	if allMem && !mem.IsZero() {
		r.MemoryLimitInBytes = mem.Value()
	}
	return r
}

func podSysctls(pod *corev1.Pod) map[string]string {
	if pod.Spec.SecurityContext == nil || len(pod.Spec.SecurityContext.Sysctls) == 0 {
		return nil
	}
	out := map[string]string{}
	for _, s := range pod.Spec.SecurityContext.Sysctls {
		out[s.Name] = s.Value
	}
	return out
}

func namespaceOptions(pod *corev1.Pod) *runtimeapi.NamespaceOption {
	o := &runtimeapi.NamespaceOption{
		Network: runtimeapi.NamespaceMode_POD,
		Pid:     runtimeapi.NamespaceMode_CONTAINER,
		Ipc:     runtimeapi.NamespaceMode_POD,
	}
	if pod.Spec.HostNetwork {
		o.Network = runtimeapi.NamespaceMode_NODE
	}
	if pod.Spec.HostPID {
		o.Pid = runtimeapi.NamespaceMode_NODE
	} else if pod.Spec.ShareProcessNamespace != nil && *pod.Spec.ShareProcessNamespace {
		o.Pid = runtimeapi.NamespaceMode_POD
	}
	if pod.Spec.HostIPC {
		o.Ipc = runtimeapi.NamespaceMode_NODE
	}
	return o
}

func seccompOf(p *corev1.SeccompProfile) *runtimeapi.SecurityProfile {
	if p == nil {
		return nil
	}
	switch p.Type {
	case corev1.SeccompProfileTypeUnconfined:
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}
	case corev1.SeccompProfileTypeLocalhost:
		ref := ""
		if p.LocalhostProfile != nil {
			ref = *p.LocalhostProfile
		}
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: ref}
	}
	return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
}

func int64Value(p *int64) *runtimeapi.Int64Value {
	if p == nil {
		return nil
	}
	return &runtimeapi.Int64Value{Value: *p}
}

func sandboxSecurityContext(pod *corev1.Pod) *runtimeapi.LinuxSandboxSecurityContext {
	sc := &runtimeapi.LinuxSandboxSecurityContext{
		NamespaceOptions: namespaceOptions(pod),
		Seccomp:          &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
	}
	if psc := pod.Spec.SecurityContext; psc != nil {
		sc.RunAsUser = int64Value(psc.RunAsUser)
		sc.RunAsGroup = int64Value(psc.RunAsGroup)
		sc.SupplementalGroups = append(sc.SupplementalGroups, psc.SupplementalGroups...)
		if psc.FSGroup != nil {
			sc.SupplementalGroups = append(sc.SupplementalGroups, *psc.FSGroup)
		}
		if p := seccompOf(psc.SeccompProfile); p != nil {
			sc.Seccomp = p
		}
	}
	for _, c := range pod.Spec.Containers {
		if c.SecurityContext != nil && c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged {
			sc.Privileged = true
		}
	}
	return sc
}

// containerSecurityContext merges the pod's and the container's security
// contexts. no_new_privs is on unless privilege escalation is allowed or
// the container is privileged; seccomp is RuntimeDefault unless asked
// otherwise (Skiff's hardened defaults).
func containerSecurityContext(pod *corev1.Pod, c *corev1.Container) *runtimeapi.LinuxContainerSecurityContext {
	sc := &runtimeapi.LinuxContainerSecurityContext{
		NamespaceOptions: namespaceOptions(pod),
		Seccomp:          &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
		NoNewPrivs:       true,
	}
	if psc := pod.Spec.SecurityContext; psc != nil {
		sc.RunAsUser = int64Value(psc.RunAsUser)
		sc.RunAsGroup = int64Value(psc.RunAsGroup)
		sc.SupplementalGroups = append(sc.SupplementalGroups, psc.SupplementalGroups...)
		if psc.FSGroup != nil {
			sc.SupplementalGroups = append(sc.SupplementalGroups, *psc.FSGroup)
		}
		if p := seccompOf(psc.SeccompProfile); p != nil {
			sc.Seccomp = p
		}
	}
	if csc := c.SecurityContext; csc != nil {
		if csc.RunAsUser != nil {
			sc.RunAsUser = int64Value(csc.RunAsUser)
		}
		if csc.RunAsGroup != nil {
			sc.RunAsGroup = int64Value(csc.RunAsGroup)
		}
		if csc.ReadOnlyRootFilesystem != nil {
			sc.ReadonlyRootfs = *csc.ReadOnlyRootFilesystem
		}
		if csc.Privileged != nil && *csc.Privileged {
			sc.Privileged = true
			sc.NoNewPrivs = false
		}
		if csc.AllowPrivilegeEscalation != nil && *csc.AllowPrivilegeEscalation {
			sc.NoNewPrivs = false
		}
		if csc.Capabilities != nil {
			sc.Capabilities = &runtimeapi.Capability{}
			for _, cp := range csc.Capabilities.Add {
				sc.Capabilities.AddCapabilities = append(sc.Capabilities.AddCapabilities, string(cp))
			}
			for _, cp := range csc.Capabilities.Drop {
				sc.Capabilities.DropCapabilities = append(sc.Capabilities.DropCapabilities, string(cp))
			}
		}
		if p := seccompOf(csc.SeccompProfile); p != nil {
			sc.Seccomp = p
		}
	}
	if sc.Privileged {
		sc.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}
	}
	return sc
}

// runtimeClass is the runtime handler the pod's sandbox is asked for:
// always the default (""). The agent has one runtime (libcontainer),
// which refuses any other handler; a pod naming a RuntimeClass (which the
// API server's admission has checked exists, and whose overhead and
// scheduling it applied) runs with it whatever the class's handler says.
func runtimeClass(*corev1.Pod) string { return "" }
