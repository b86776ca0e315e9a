package e2e

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestRealContainersConformance checks with real containers the kubelet
// behaviours of upstream conformance tests: the FallbackToLogsOnError
// termination message, a non-root user reading a secret volume through
// fsGroup, and a failed init container of a RestartNever pod.
func TestRealContainersConformance(t *testing.T) {
	n := startRealNode(t)

	t.Run("TerminationMessageFromLogs", func(t *testing.T) {
		p := bbPod("termmsg", corev1.RestartPolicyNever, "echo -n DONE; /bin/false")
		p.Spec.Containers[0].TerminationMessagePolicy = corev1.TerminationMessageFallbackToLogsOnError
		n.create(p)
		got := n.waitPod("termmsg", "failed", phase(corev1.PodFailed))
		if st := got.Status.ContainerStatuses[0].State.Terminated; st == nil || st.Message != "DONE" {
			t.Errorf("termination message: %+v, want %q", st, "DONE")
		}
	})

	t.Run("SecretVolumeFSGroupNonRoot", func(t *testing.T) {
		if _, err := n.cs.CoreV1().Secrets("default").Create(t.Context(), &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "fsg"}, Data: map[string][]byte{"data-1": []byte("value-1")},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		user, group, mode := int64(1000), int64(1001), int32(0o440)
		p := bbPod("fsgroup", corev1.RestartPolicyNever, "ls -lLn /etc/secret-volume/data-1; cat /etc/secret-volume/data-1")
		p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: &user, FSGroup: &group}
		p.Spec.Volumes = []corev1.Volume{{Name: "s", VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{SecretName: "fsg", DefaultMode: &mode}}}}
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "s", MountPath: "/etc/secret-volume"}}
		n.create(p)
		n.waitPod("fsgroup", "succeeded", phase(corev1.PodSucceeded))
		out, err := n.kubectl("logs", "fsgroup")
		if err != nil || !strings.HasPrefix(out, "-r--r-----") || !strings.Contains(out, " 1001 ") || !strings.Contains(out, "value-1") {
			t.Errorf("logs: %v: %q (want mode -r--r-----, group 1001, the content)", err, out)
		}
	})

	t.Run("InitContainerFailsRestartNever", func(t *testing.T) {
		p := bbPod("initfail", corev1.RestartPolicyNever, "true")
		p.Spec.InitContainers = []corev1.Container{
			{Name: "init1", Image: busyboxRef, Command: []string{"/bin/true"}},
			{Name: "init2", Image: busyboxRef, Command: []string{"/bin/false"}},
		}
		n.create(p)
		got := n.waitPod("initfail", "failed", phase(corev1.PodFailed))
		var init *corev1.PodCondition
		for i := range got.Status.Conditions {
			if got.Status.Conditions[i].Type == corev1.PodInitialized {
				init = &got.Status.Conditions[i]
			}
		}
		if init == nil || init.Status != corev1.ConditionFalse || init.Message != "containers with incomplete status: [init2]" {
			t.Errorf("Initialized: %+v", init)
		}
		if cs := got.Status.ContainerStatuses; len(cs) != 1 || cs[0].State.Waiting == nil {
			t.Errorf("app container: %s", fmt.Sprint(cs))
		}
		if ics := got.Status.InitContainerStatuses; len(ics) != 2 || !ics[0].Ready || ics[1].Ready {
			t.Errorf("init containers: %s", fmt.Sprint(ics))
		}
	})
}
