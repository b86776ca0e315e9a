package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func mountAt(mounts []*runtimeapi.Mount, path string) *runtimeapi.Mount {
	for _, m := range mounts {
		if m.ContainerPath == path {
			return m
		}
	}
	return nil
}

func readLink(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(b)
}

func TestVolumes(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if _, err := h.cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cfg"}, Data: map[string]string{"app.conf": "v1", "other": "x"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.cs.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "sec"}, Data: map[string][]byte{"password": []byte("s3cret")},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sa, err := h.cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "robot"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hostDir := t.TempDir()
	dirOrCreate := corev1.HostPathDirectoryOrCreate
	mode := int32(0o400)
	size := resource.MustParse("16Mi")
	p := pod("vols", corev1.RestartPolicyAlways, corev1.Container{
		Name: "c", Image: "present:1.0",
		VolumeMounts: []corev1.VolumeMount{
			{Name: "cfg", MountPath: "/etc/app"},
			{Name: "cfg", MountPath: "/etc/app.conf", SubPath: "app.conf"},
			{Name: "sec", MountPath: "/secrets"},
			{Name: "info", MountPath: "/info"},
			{Name: "all", MountPath: "/all"},
			{Name: "scratch", MountPath: "/scratch"},
			{Name: "scratch", MountPath: "/scratch-sub", SubPath: "a/b"},
			{Name: "mem", MountPath: "/mem"},
			{Name: "host", MountPath: "/host", ReadOnly: true},
		},
	})
	p.Labels = map[string]string{"app": "vols"}
	p.Spec.ServiceAccountName = "robot"
	p.Spec.Volumes = []corev1.Volume{
		{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
		{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec", DefaultMode: &mode}}},
		{Name: "info", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
			{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}},
			{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
		}}}},
		{Name: "all", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Items: []corev1.KeyToPath{{Key: "app.conf", Path: "conf/app.conf"}}}},
			{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "ns", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}}},
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}},
		}}}},
		{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: &size}}},
		{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: filepath.Join(hostDir, "made"), Type: &dirOrCreate}}},
	}
	created := h.createPod(p)
	h.waitPod("vols", "running", phaseIs(corev1.PodRunning))
	mounts := h.containerOf("c").Config.Mounts
	vol := func(plugin, name string) string {
		return filepath.Join(h.dir, "agent", "pods", string(created.UID), "volumes", plugin, name)
	}

	if m := mountAt(mounts, "/etc/app"); m == nil || m.HostPath != vol("configmap", "cfg") || !m.Readonly {
		t.Errorf("configmap mount = %+v", m)
	}
	if got := readLink(t, filepath.Join(vol("configmap", "cfg"), "app.conf")); got != "v1" {
		t.Errorf("app.conf = %q", got)
	}
	if m := mountAt(mounts, "/etc/app.conf"); m == nil || !strings.HasSuffix(m.HostPath, "app.conf") {
		t.Errorf("subPath mount = %+v", m)
	}
	fi, err := os.Stat(filepath.Join(vol("secret", "sec"), "password"))
	if err != nil || fi.Mode().Perm() != 0o400 {
		t.Errorf("secret file: %v %v", fi, err)
	}
	if got := readLink(t, filepath.Join(vol("downward-api", "info"), "name")); got != "vols" {
		t.Errorf("downward name = %q", got)
	}
	if got := readLink(t, filepath.Join(vol("downward-api", "info"), "labels")); got != `app="vols"` {
		t.Errorf("downward labels = %q", got)
	}
	for f, want := range map[string]string{"conf/app.conf": "v1", "password": "s3cret", "ns": "default"} {
		if got := readLink(t, filepath.Join(vol("projected", "all"), f)); got != want {
			t.Errorf("projected %s = %q, want %q", f, got, want)
		}
	}
	// The projected token is a TokenRequest bound to the pod.
	tok := readLink(t, filepath.Join(vol("projected", "all"), "token"))
	claims, err := h.api.Tokens.Verify(tok, time.Now())
	if err != nil {
		t.Fatalf("projected token: %v", err)
	}
	if claims.ServiceAccount != "robot" || claims.ServiceAccountUID != sa.UID || claims.Pod == nil || claims.Pod.UID != created.UID ||
		claims.Node == nil || claims.Node.Name != testNode {
		t.Errorf("projected token claims = %+v", claims)
	}
	if life := time.Until(claims.Expiry); life < 50*time.Minute || life > time.Hour+time.Minute {
		t.Errorf("projected token lifetime %v, want the default hour", life)
	}
	if m := mountAt(mounts, "/scratch-sub"); m == nil || m.HostPath != filepath.Join(vol("empty-dir", "scratch"), "a", "b") {
		t.Errorf("emptyDir subPath = %+v", m)
	}
	if sz, ok := h.mnt.tmpfs[vol("empty-dir", "mem")]; !ok || sz != 16<<20 {
		t.Errorf("memory emptyDir tmpfs = %v (%v)", sz, h.mnt.tmpfs)
	}
	if _, ok := h.mnt.tmpfs[vol("secret", "sec")]; !ok {
		t.Errorf("secret volume not on tmpfs: %v", h.mnt.tmpfs)
	}
	if m := mountAt(mounts, "/host"); m == nil || m.HostPath != filepath.Join(hostDir, "made") || !m.Readonly {
		t.Errorf("hostPath mount = %+v", m)
	}
	if fi, err := os.Stat(filepath.Join(hostDir, "made")); err != nil || !fi.IsDir() {
		t.Errorf("DirectoryOrCreate did not create: %v", err)
	}
	if m := mountAt(mounts, "/etc/hosts"); m == nil || !strings.Contains(readLink(t, m.HostPath), "vols") {
		t.Errorf("/etc/hosts mount = %+v", m)
	}
	if mountAt(mounts, "/etc/resolv.conf") == nil {
		t.Errorf("no /etc/resolv.conf mount")
	}

	// A changed config map is rewritten in place.
	cm, _ := h.cs.CoreV1().ConfigMaps("default").Get(ctx, "cfg", metav1.GetOptions{})
	cm.Data["app.conf"] = "v2"
	if _, err := h.cs.CoreV1().ConfigMaps("default").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("config map refreshed", func() error {
		if got := readLink(t, filepath.Join(vol("configmap", "cfg"), "app.conf")); got != "v2" {
			return fmt.Errorf("app.conf = %q", got)
		}
		if got := readLink(t, filepath.Join(vol("projected", "all"), "conf/app.conf")); got != "v2" {
			return fmt.Errorf("projected app.conf = %q", got)
		}
		return nil
	})

	// Deleting the pod removes its directory.
	zero := int64(0)
	if err := h.cs.CoreV1().Pods("default").Delete(ctx, "vols", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("pod directory removed", func() error {
		if _, err := os.Stat(filepath.Join(h.dir, "agent", "pods", string(created.UID))); !os.IsNotExist(err) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
}

func TestMissingConfigMap(t *testing.T) {
	h := newHarness(t)
	c := ctr("c")
	c.Env = []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: "later"}, Key: "k"}}}}
	h.createPod(pod("waits", corev1.RestartPolicyAlways, c))
	h.waitPod("waits", "CreateContainerConfigError", func(p *corev1.Pod) error {
		if w := cstatus(p, "c").State.Waiting; w == nil || w.Reason != "CreateContainerConfigError" {
			return fmt.Errorf("%s", describe(p))
		}
		return nil
	})
	if _, err := h.cs.CoreV1().ConfigMaps("default").Create(context.Background(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "later"}, Data: map[string]string{"k": "v"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitPod("waits", "running", phaseIs(corev1.PodRunning))
}

func TestEnv(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	_, _ = h.cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm"}, Data: map[string]string{"A": "1", "B": "2"}}, metav1.CreateOptions{})
	_, _ = h.cs.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Data: map[string][]byte{"pw": []byte("x")}}, metav1.CreateOptions{})
	yes := true
	c := ctr("c")
	c.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}
	c.EnvFrom = []corev1.EnvFromSource{{Prefix: "CM_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}}}
	c.Env = []corev1.EnvVar{
		{Name: "PW", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}, Key: "pw"}}},
		{Name: "OPT", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Key: "pw", Optional: &yes}}},
		{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
		{Name: "IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		{Name: "MEM", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
		{Name: "GREETING", Value: "pod $(POD) on $(NODE)"},
	}
	h.createPod(pod("env", corev1.RestartPolicyAlways, c))
	h.waitPod("env", "running", phaseIs(corev1.PodRunning))
	got := map[string]string{}
	for _, kv := range h.containerOf("c").Config.Envs {
		got[kv.Key] = string(kv.Value)
	}
	want := map[string]string{"CM_A": "1", "CM_B": "2", "PW": "x", "POD": "env", "NODE": testNode, "MEM": "64", "GREETING": "pod env on node1"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if _, ok := got["OPT"]; ok {
		t.Errorf("optional missing secret set OPT")
	}
	if !strings.HasPrefix(got["IP"], "10.42.7.") {
		t.Errorf("IP = %q", got["IP"])
	}
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "1", "B": "two"}
	for in, want := range map[string]string{
		"$(A)-$(B)": "1-two", "$$(A)": "$(A)", "$(C)": "$(C)", "x$": "x$", "$(A": "$(A", "$A": "$A", "plain": "plain",
	} {
		if got := expand(in, vars); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWriteAtomic(t *testing.T) {
	dir := t.TempDir()
	files := map[string]volumeFile{"a": {data: []byte("1"), mode: 0o644}, "sub/b": {data: []byte("2"), mode: 0o600}}
	if err := writeAtomic(dir, files, 0o644); err != nil {
		t.Fatal(err)
	}
	first, _ := os.Readlink(filepath.Join(dir, "..data"))
	if err := writeAtomic(dir, files, 0o644); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.Readlink(filepath.Join(dir, "..data")); again != first {
		t.Errorf("unchanged content was rewritten")
	}
	delete(files, "a")
	files["sub/b"] = volumeFile{data: []byte("3"), mode: 0o600}
	if err := writeAtomic(dir, files, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "a")); !os.IsNotExist(err) {
		t.Errorf("removed key still linked: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "sub", "b")); string(b) != "3" {
		t.Errorf("sub/b = %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, first)); !os.IsNotExist(err) {
		t.Errorf("old data dir kept")
	}
	if err := writeAtomic(dir, map[string]volumeFile{"../x": {}}, 0o644); err == nil {
		t.Errorf("path escaping the volume accepted")
	}
}

// A secret volume of a pod with an fsGroup belongs to that group, as the
// kubelet's SetVolumeOwnership makes it (conformance "Secrets should be
// consumable from pods in volume as non-root with defaultMode and fsGroup
// set"): a non-root user in the group reads a 0440 file.
func TestSecretVolumeFSGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: files are given to another group")
	}
	h := newHarness(t)
	if _, err := h.cs.CoreV1().Secrets("default").Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "sec"}, Data: map[string][]byte{"data-1": []byte("value-1"), "data-2": []byte("v2")},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	user, group, mode, itemMode := int64(1000), int64(1001), int32(0o440), int32(0o400)
	p := pod("fsgroup", corev1.RestartPolicyAlways, ctr("c"))
	p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: &user, FSGroup: &group}
	p.Spec.Volumes = []corev1.Volume{
		{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec", DefaultMode: &mode}}},
		{Name: "m", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec",
			Items: []corev1.KeyToPath{{Key: "data-1", Path: "new-path-data-1", Mode: &itemMode}}}}},
	}
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "s", MountPath: "/etc/secret-volume"}, {Name: "m", MountPath: "/etc/m"}}
	h.createPod(p)
	got := h.waitPod("fsgroup", "running", phaseIs(corev1.PodRunning))
	for _, c := range []struct {
		vol, file string
		mode      os.FileMode
	}{{"s", "data-1", 0o440}, {"m", "new-path-data-1", 0o440}} {
		dir := h.a.volumes.volumeDir(got.UID, &p.Spec.Volumes[map[string]int{"s": 0, "m": 1}[c.vol]])
		fi, err := os.Stat(filepath.Join(dir, c.file))
		if err != nil {
			t.Fatal(err)
		}
		if gid := statGID(t, fi); fi.Mode().Perm() != c.mode || gid != uint32(group) {
			t.Errorf("%s/%s: mode %v gid %d, want %v gid %d", c.vol, c.file, fi.Mode().Perm(), gid, c.mode, group)
		}
		di, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if statGID(t, di) != uint32(group) || di.Mode()&os.ModeSetgid == 0 || di.Mode().Perm()&0o050 != 0o050 {
			t.Errorf("%s: volume dir mode %v gid %d", c.vol, di.Mode(), statGID(t, di))
		}
	}
}
