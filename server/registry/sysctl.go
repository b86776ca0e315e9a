package registry

import (
	"fmt"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Sysctl names as Kubernetes validates them: dot- or slash-separated
// segments of lower-case letters, digits, '-' and '_', at most 253
// characters.
const (
	sysctlSegmentFmt = "[a-z0-9]([-_a-z0-9]*[a-z0-9])?"
	sysctlMaxLength  = 253
)

var sysctlNameRegexp = regexp.MustCompile("^(" + sysctlSegmentFmt + "[\\./])*" + sysctlSegmentFmt + "$")

// validSysctlName reports whether name is a well-formed sysctl name.
func validSysctlName(name string) bool {
	return len(name) <= sysctlMaxLength && sysctlNameRegexp.MatchString(name)
}

// sysctlNamespace names the kernel namespace a sysctl belongs to ("net",
// "ipc"; "" for node-wide ones), as the kubelet groups them.
func sysctlNamespace(name string) string {
	name = strings.ReplaceAll(name, "/", ".")
	switch {
	case strings.HasPrefix(name, "net."):
		return "net"
	case name == "kernel.sem", strings.HasPrefix(name, "kernel.shm"), strings.HasPrefix(name, "kernel.msg"),
		strings.HasPrefix(name, "fs.mqueue."):
		return "ipc"
	}
	return ""
}

// validateSysctls checks a pod's sysctls as kube-apiserver does: each
// name required, well-formed and not repeated, and not in a namespace the
// pod shares with the host.
func validateSysctls(sc *corev1.PodSecurityContext, hostNetwork, hostIPC bool, p *field.Path) field.ErrorList {
	if sc == nil {
		return nil
	}
	var errs field.ErrorList
	seen := map[string]bool{}
	for i, s := range sc.Sysctls {
		np := p.Index(i).Child("name")
		switch {
		case s.Name == "":
			errs = append(errs, field.Required(np, ""))
		case !validSysctlName(s.Name):
			errs = append(errs, field.Invalid(np, s.Name, fmt.Sprintf("must have at most %d characters and match regex %s", sysctlMaxLength, sysctlNameRegexp)))
		case seen[s.Name]:
			errs = append(errs, field.Duplicate(np, s.Name))
		}
		seen[s.Name] = true
		switch ns := sysctlNamespace(s.Name); {
		case ns == "net" && hostNetwork:
			errs = append(errs, field.Invalid(np, s.Name, "may not be specified when 'hostNetwork' is true"))
		case ns == "ipc" && hostIPC:
			errs = append(errs, field.Invalid(np, s.Name, "may not be specified when 'hostIPC' is true"))
		}
	}
	return errs
}
