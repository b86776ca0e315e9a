package agent

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestManagedHosts: the pod's /etc/hosts byte for byte as the kubelet
// writes it.
func TestManagedHosts(t *testing.T) {
	aliases := []corev1.HostAlias{{IP: "10.0.0.1", Hostnames: []string{"a", "b"}}, {IP: "10.0.0.2", Hostnames: []string{"c"}}}
	const head = "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
	for name, tc := range map[string]struct {
		ips     []string
		domain  string
		aliases []corev1.HostAlias
		want    string
	}{
		"plain":     {[]string{"10.42.0.5"}, "", nil, head + "10.42.0.5\tweb\n"},
		"subdomain": {[]string{"10.42.0.5"}, "sub.ns.svc.cluster.local", nil, head + "10.42.0.5\tweb.sub.ns.svc.cluster.local\tweb\n"},
		"aliases": {[]string{"10.42.0.5"}, "", aliases,
			head + "10.42.0.5\tweb\n\n# Entries added by HostAliases.\n10.0.0.1\ta\tb\n10.0.0.2\tc\n"},
		"no IP yet": {nil, "", nil, head},
	} {
		if got := string(managedHosts(tc.ips, "web", tc.domain, tc.aliases)); got != tc.want {
			t.Errorf("%s:\n%q\nwant\n%q", name, got, tc.want)
		}
	}
	got := string(hostNetworkHosts([]byte("127.0.0.1 localhost\n"), aliases[1:]))
	if want := "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n\n# Entries added by HostAliases.\n10.0.0.2\tc\n"; got != want {
		t.Errorf("host network:\n%q\nwant\n%q", got, want)
	}
}

// TestLastTerminated: logs --previous is the run lastState names.
func TestLastTerminated(t *testing.T) {
	inst := func(attempt uint32, state runtimeapi.ContainerState, code int32) *runtimeapi.ContainerStatus {
		return &runtimeapi.ContainerStatus{Id: string(rune('a' + attempt)), Metadata: &runtimeapi.ContainerMetadata{Name: "c", Attempt: attempt}, State: state, ExitCode: code}
	}
	exited, running := runtimeapi.ContainerState_CONTAINER_EXITED, runtimeapi.ContainerState_CONTAINER_RUNNING
	always := func(int32) bool { return true }
	never := func(int32) bool { return false }
	for name, tc := range map[string]struct {
		list     []*runtimeapi.ContainerStatus
		restarts func(int32) bool
		want     string // instance ID, "" for none
	}{
		"waiting to restart after run 2": {[]*runtimeapi.ContainerStatus{inst(2, exited, 1), inst(1, exited, 1)}, always, "c"},
		"run 2 running":                  {[]*runtimeapi.ContainerStatus{inst(2, running, 0), inst(1, exited, 1)}, always, "b"},
		"finished for good":              {[]*runtimeapi.ContainerStatus{inst(2, exited, 0), inst(1, exited, 1)}, never, "b"},
		"first run waiting":              {[]*runtimeapi.ContainerStatus{inst(0, exited, 1)}, always, "a"},
		"first run running":              {[]*runtimeapi.ContainerStatus{inst(0, running, 0)}, always, ""},
	} {
		rt := &podRuntime{containers: map[string][]*runtimeapi.ContainerStatus{"c": tc.list}}
		got := ""
		if c := rt.lastTerminated("c", tc.restarts); c != nil {
			got = c.Id
		}
		if got != tc.want {
			t.Errorf("%s: instance %q, want %q", name, got, tc.want)
		}
	}
}
