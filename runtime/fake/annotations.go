package fake

import (
	"strconv"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Pod annotations that script every container of the pod (init containers
// too) on a fake runtime, for hollow nodes and scale tests; they take
// precedence over the words of the container's command:
//
//	fake.skiff.io/run-for: 2s       run 2s, then exit (with 0 unless exit-code says)
//	fake.skiff.io/exit-code: "1"    exit with 1 (at once without run-for)
//	fake.skiff.io/fail-start: "true" StartContainer fails (exit 128, StartError)
const (
	AnnotationRunFor    = "fake.skiff.io/run-for"
	AnnotationExitCode  = "fake.skiff.io/exit-code"
	AnnotationFailStart = "fake.skiff.io/fail-start"
)

// scriptFor is a container's script: the words of its command and args,
// then the pod's annotations (which the kubelet passes on as the
// sandbox's).
func scriptFor(c *runtimeapi.ContainerConfig, sb *runtimeapi.PodSandboxConfig) script {
	s := parseScript(append(append([]string(nil), c.GetCommand()...), c.GetArgs()...))
	ann := sb.GetAnnotations()
	if v, ok := ann[AnnotationRunFor]; ok {
		if d, err := time.ParseDuration(v); err == nil && d >= 0 {
			s.after = d
			if s.exit == nil {
				zero := int32(0)
				s.exit = &zero
			}
		}
	}
	if v, ok := ann[AnnotationExitCode]; ok {
		if n, err := strconv.Atoi(v); err == nil {
			code := int32(n)
			s.exit = &code
		}
	}
	if v, ok := ann[AnnotationFailStart]; ok {
		s.failStart, _ = strconv.ParseBool(v)
	}
	return s
}
