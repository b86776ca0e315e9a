package fake

import (
	"context"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestAnnotationsScriptContainers(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		ann       map[string]string
		startErr  bool
		wantState runtimeapi.ContainerState
		wantCode  int32
		after     time.Duration
	}{
		{"runs forever by default", nil, false, runtimeapi.ContainerState_CONTAINER_RUNNING, 0, 0},
		{"exit code at once", map[string]string{AnnotationExitCode: "1"}, false, runtimeapi.ContainerState_CONTAINER_EXITED, 1, 0},
		{"run for, then exit 0", map[string]string{AnnotationRunFor: "50ms"}, false, runtimeapi.ContainerState_CONTAINER_EXITED, 0, 50 * time.Millisecond},
		{"run for, then exit 3", map[string]string{AnnotationRunFor: "50ms", AnnotationExitCode: "3"}, false, runtimeapi.ContainerState_CONTAINER_EXITED, 3, 50 * time.Millisecond},
		{"fail start", map[string]string{AnnotationFailStart: "true"}, true, runtimeapi.ContainerState_CONTAINER_EXITED, 128, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFakeRuntime()
			sbCfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "default", Uid: "u"}, Annotations: tc.ann}
			sb, err := f.RunPodSandbox(ctx, sbCfg, "")
			if err != nil {
				t.Fatal(err)
			}
			id, err := f.CreateContainer(ctx, sb, &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"},
				Image: &runtimeapi.ImageSpec{Image: "busybox"}}, sbCfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.StartContainer(ctx, id); (err != nil) != tc.startErr {
				t.Fatalf("start error %v, want error: %v", err, tc.startErr)
			}
			if tc.after > 0 {
				c, _ := f.Container(id)
				if c.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
					t.Fatalf("should run for %s first, is %s", tc.after, c.State)
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				c, _ := f.Container(id)
				if c.State == tc.wantState && c.ExitCode == tc.wantCode {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("state %s code %d, want %s %d", c.State, c.ExitCode, tc.wantState, tc.wantCode)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}
