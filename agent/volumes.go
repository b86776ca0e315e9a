package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Mounter mounts and unmounts the file systems of memory-backed volumes.
type Mounter interface {
	// MountTmpfs mounts a tmpfs of at most sizeBytes (0: the default) at
	// dir.
	MountTmpfs(dir string, sizeBytes int64) error
	// UnmountAll unmounts everything mounted at or below dir.
	UnmountAll(dir string) error
}

// volumeManager prepares a pod's volumes on the host, under
// <data-dir>/agent/pods/<uid>/volumes/<plugin>/<name>, and rewrites the
// files of configMap, secret, downwardAPI and projected volumes when their
// sources change.
type volumeManager struct {
	a  *Agent
	mu sync.Mutex
	// ready: pods whose volumes were set up once (by UID).
	ready map[types.UID]bool
	// tokens of projected serviceAccountToken sources (satoken.go).
	tokens *tokenManager
	// plugins set up persistent volumes (pvc.go); claimDirs holds the
	// host directory of each pod's persistentVolumeClaim volumes.
	plugins   []PersistentVolumePlugin
	claimDirs map[types.UID]map[string]string
}

func newVolumeManager(a *Agent) *volumeManager {
	return &volumeManager{a: a, ready: map[types.UID]bool{}, tokens: newTokenManager(a),
		plugins: []PersistentVolumePlugin{localVolumePlugin{}}, claimDirs: map[types.UID]map[string]string{}}
}

// volumePlugin names the directory of a volume's kind.
func volumePlugin(v *corev1.Volume) string {
	switch {
	case v.EmptyDir != nil:
		return "empty-dir"
	case v.ConfigMap != nil:
		return "configmap"
	case v.Secret != nil:
		return "secret"
	case v.DownwardAPI != nil:
		return "downward-api"
	case v.Projected != nil:
		return "projected"
	case v.PersistentVolumeClaim != nil:
		return "persistent-volume-claim"
	}
	return "other"
}

func (m *volumeManager) volumeDir(uid types.UID, v *corev1.Volume) string {
	return filepath.Join(m.a.cfg.podDir(string(uid)), "volumes", volumePlugin(v), v.Name)
}

// setup makes every volume of the pod ready, once (the refresh loop
// keeps configMap, secret, downwardAPI and projected volumes current).
func (m *volumeManager) setup(ctx context.Context, pod *corev1.Pod) error {
	m.mu.Lock()
	done := m.ready[pod.UID]
	m.mu.Unlock()
	if done {
		return nil
	}
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		if err := m.setupVolume(ctx, pod, v, false); err != nil {
			return fmt.Errorf("MountVolume.SetUp failed for volume %q : %w", v.Name, err)
		}
	}
	m.mu.Lock()
	m.ready[pod.UID] = true
	m.mu.Unlock()
	return nil
}

func (m *volumeManager) setupVolume(ctx context.Context, pod *corev1.Pod, v *corev1.Volume, refresh bool) error {
	dir := m.volumeDir(pod.UID, v)
	switch {
	case v.EmptyDir != nil:
		if refresh {
			return nil
		}
		return m.setupEmptyDir(dir, v.EmptyDir)
	case v.HostPath != nil:
		if refresh {
			return nil
		}
		return setupHostPath(v.HostPath)
	case v.ConfigMap != nil, v.Secret != nil, v.DownwardAPI != nil, v.Projected != nil:
		files, mode, err := m.a.volumeFiles(ctx, pod, v)
		if err != nil {
			if !refresh && !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err) && complete(dir) {
				// The API is out of reach (node autonomy): the content
				// written before the agent restarted stays until the
				// refresh loop can update it.
				m.a.log.Info("volume kept as it was: its source is out of reach", "pod", pod.Namespace+"/"+pod.Name, "volume", v.Name, "err", err)
				return nil
			}
			return err
		}
		if !refresh {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			if v.Secret != nil || v.Projected != nil {
				// Secrets live in memory, as the kubelet keeps them.
				if err := m.ensureTmpfs(dir, 0); err != nil {
					return err
				}
			}
		}
		fsGroup := fsGroupOf(pod)
		if fsGroup != nil {
			// Read-only volumes under fsGroup: every file readable by
			// owner and group (the kubelet's SetVolumeOwnership).
			for p, f := range files {
				f.mode |= 0o440
				files[p] = f
			}
		}
		if err := writeAtomic(dir, files, mode); err != nil {
			return err
		}
		if fsGroup != nil {
			return ownReadOnlyVolume(dir, *fsGroup)
		}
		return nil
	case v.PersistentVolumeClaim != nil:
		if refresh {
			return nil
		}
		return m.setupClaim(ctx, pod, v)
	}
	return nil
}

func (m *volumeManager) setupEmptyDir(dir string, e *corev1.EmptyDirVolumeSource) error {
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		return err
	}
	if e.Medium != corev1.StorageMediumMemory {
		return nil
	}
	size := int64(0)
	if e.SizeLimit != nil {
		size = e.SizeLimit.Value()
	}
	return m.ensureTmpfs(dir, size)
}

// ensureTmpfs mounts a tmpfs at dir unless one is there.
func (m *volumeManager) ensureTmpfs(dir string, size int64) error {
	mounted, err := isMountPoint(dir)
	if err != nil || mounted {
		return err
	}
	if err := m.a.cfg.Mounter.MountTmpfs(dir, size); err != nil {
		return fmt.Errorf("mount tmpfs: %w", err)
	}
	return os.Chmod(dir, 0o777)
}

// setupHostPath checks (or creates) a hostPath per its type.
func setupHostPath(h *corev1.HostPathVolumeSource) error {
	t := corev1.HostPathUnset
	if h.Type != nil {
		t = *h.Type
	}
	fi, err := os.Stat(h.Path)
	switch t {
	case corev1.HostPathUnset:
		return nil
	case corev1.HostPathDirectoryOrCreate:
		if os.IsNotExist(err) {
			return os.MkdirAll(h.Path, 0o755)
		}
		if err == nil && !fi.IsDir() {
			return fmt.Errorf("hostPath type check failed: %s is not a directory", h.Path)
		}
		return err
	case corev1.HostPathFileOrCreate:
		if os.IsNotExist(err) {
			if err := os.MkdirAll(filepath.Dir(h.Path), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(h.Path, os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			return f.Close()
		}
		if err == nil && fi.IsDir() {
			return fmt.Errorf("hostPath type check failed: %s is a directory", h.Path)
		}
		return err
	}
	if err != nil {
		return fmt.Errorf("hostPath type check failed: %w", err)
	}
	ok := true
	switch t {
	case corev1.HostPathDirectory:
		ok = fi.IsDir()
	case corev1.HostPathFile:
		ok = fi.Mode().IsRegular()
	case corev1.HostPathSocket:
		ok = fi.Mode()&os.ModeSocket != 0
	case corev1.HostPathCharDev:
		ok = fi.Mode()&os.ModeCharDevice != 0
	case corev1.HostPathBlockDev:
		ok = fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0
	}
	if !ok {
		return fmt.Errorf("hostPath type check failed: %s is not a %s", h.Path, t)
	}
	return nil
}

// volumeFile is one file of a configMap, secret, downwardAPI or projected
// volume.
type volumeFile struct {
	data []byte
	mode os.FileMode
}

// volumeFiles renders the files of a configMap, secret, downwardAPI or
// projected volume.
func (a *Agent) volumeFiles(ctx context.Context, pod *corev1.Pod, v *corev1.Volume) (map[string]volumeFile, os.FileMode, error) {
	files := map[string]volumeFile{}
	mode := func(def *int32, fallback int32) os.FileMode {
		if def != nil {
			return os.FileMode(*def)
		}
		return os.FileMode(fallback)
	}
	switch {
	case v.ConfigMap != nil:
		dm := mode(v.ConfigMap.DefaultMode, corev1.ConfigMapVolumeSourceDefaultMode)
		return files, dm, a.configMapFiles(ctx, pod, &v.ConfigMap.LocalObjectReference, v.ConfigMap.Items, v.ConfigMap.Optional, dm, files)
	case v.Secret != nil:
		dm := mode(v.Secret.DefaultMode, corev1.SecretVolumeSourceDefaultMode)
		return files, dm, a.secretFiles(ctx, pod, v.Secret.SecretName, v.Secret.Items, v.Secret.Optional, dm, files)
	case v.DownwardAPI != nil:
		dm := mode(v.DownwardAPI.DefaultMode, corev1.DownwardAPIVolumeSourceDefaultMode)
		return files, dm, a.downwardFiles(pod, v.DownwardAPI.Items, dm, files)
	case v.Projected != nil:
		dm := mode(v.Projected.DefaultMode, corev1.ProjectedVolumeSourceDefaultMode)
		for _, src := range v.Projected.Sources {
			var err error
			switch {
			case src.ConfigMap != nil:
				err = a.configMapFiles(ctx, pod, &src.ConfigMap.LocalObjectReference, src.ConfigMap.Items, src.ConfigMap.Optional, dm, files)
			case src.Secret != nil:
				err = a.secretFiles(ctx, pod, src.Secret.Name, src.Secret.Items, src.Secret.Optional, dm, files)
			case src.DownwardAPI != nil:
				err = a.downwardFiles(pod, src.DownwardAPI.Items, dm, files)
			case src.ServiceAccountToken != nil:
				var tok []byte
				if tok, err = a.volumes.tokens.token(ctx, pod, src.ServiceAccountToken); err == nil {
					files[src.ServiceAccountToken.Path] = volumeFile{data: tok, mode: dm}
				}
			case src.ClusterTrustBundle != nil:
				err = errors.New("clusterTrustBundle projections are not supported")
			}
			if err != nil {
				return nil, 0, err
			}
		}
		return files, dm, nil
	}
	return files, 0o644, nil
}

func itemMode(m *int32, def os.FileMode) os.FileMode {
	if m != nil {
		return os.FileMode(*m)
	}
	return def
}

func (a *Agent) configMapFiles(ctx context.Context, pod *corev1.Pod, ref *corev1.LocalObjectReference, items []corev1.KeyToPath, opt *bool, dm os.FileMode, files map[string]volumeFile) error {
	cm, err := a.getConfigMap(ctx, pod.Namespace, ref.Name)
	if err != nil {
		if apierrors.IsNotFound(err) && optional(opt) {
			return nil
		}
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("configmap %q not found", ref.Name)
		}
		return err
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return projectKeys("configmap "+ref.Name, data, items, opt, dm, files)
}

func (a *Agent) secretFiles(ctx context.Context, pod *corev1.Pod, name string, items []corev1.KeyToPath, opt *bool, dm os.FileMode, files map[string]volumeFile) error {
	sec, err := a.getSecret(ctx, pod.Namespace, name)
	if err != nil {
		if apierrors.IsNotFound(err) && optional(opt) {
			return nil
		}
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("secret %q not found", name)
		}
		return err
	}
	return projectKeys("secret "+name, sec.Data, items, opt, dm, files)
}

func projectKeys(what string, data map[string][]byte, items []corev1.KeyToPath, opt *bool, dm os.FileMode, files map[string]volumeFile) error {
	if len(items) == 0 {
		for k, v := range data {
			files[k] = volumeFile{data: v, mode: dm}
		}
		return nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if optional(opt) {
				continue
			}
			return fmt.Errorf("%s has no key %q", what, it.Key)
		}
		files[it.Path] = volumeFile{data: v, mode: itemMode(it.Mode, dm)}
	}
	return nil
}

func (a *Agent) downwardFiles(pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, dm os.FileMode, files map[string]volumeFile) error {
	for _, it := range items {
		var val string
		var err error
		switch {
		case it.FieldRef != nil:
			val, err = a.podField(pod, it.FieldRef.FieldPath, pod.Status.PodIP)
		case it.ResourceFieldRef != nil:
			var c *corev1.Container
			for i := range pod.Spec.Containers {
				if pod.Spec.Containers[i].Name == it.ResourceFieldRef.ContainerName {
					c = &pod.Spec.Containers[i]
				}
			}
			if c == nil {
				return fmt.Errorf("downwardAPI %s: no container %q", it.Path, it.ResourceFieldRef.ContainerName)
			}
			val, err = resourceField(pod, c, it.ResourceFieldRef)
		}
		if err != nil {
			return err
		}
		files[it.Path] = volumeFile{data: []byte(val), mode: itemMode(it.Mode, dm)}
	}
	return nil
}

// writeAtomic writes files into dir the way the kubelet's atomic writer
// does: into a new timestamped directory, then an atomic rename of the
// ..data symlink, with one top-level symlink per path into ..data. Readers
// never see a half-written set; unchanged content is not rewritten.
func writeAtomic(dir string, files map[string]volumeFile, _ os.FileMode) error {
	for p := range files {
		if p == "" || filepath.IsAbs(p) || strings.HasPrefix(filepath.Clean(p), "..") || strings.HasPrefix(p, "..") {
			return fmt.Errorf("invalid path %q in volume", p)
		}
	}
	dataLink := filepath.Join(dir, "..data")
	if old, err := os.Readlink(dataLink); err == nil && sameContent(filepath.Join(dir, old), files) {
		return nil
	}
	tsDir, err := os.MkdirTemp(dir, ".."+time.Now().UTC().Format("2006_01_02_15_04_05."))
	if err != nil {
		return err
	}
	if err := os.Chmod(tsDir, 0o755); err != nil {
		return err
	}
	for p, f := range files {
		full := filepath.Join(tsDir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, f.data, f.mode.Perm()); err != nil {
			return err
		}
		if err := os.Chmod(full, f.mode.Perm()); err != nil {
			return err
		}
	}
	oldTarget, _ := os.Readlink(dataLink)
	tmpLink := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmpLink)
	if err := os.Symlink(filepath.Base(tsDir), tmpLink); err != nil {
		return err
	}
	if err := os.Rename(tmpLink, dataLink); err != nil {
		return err
	}
	// Top-level links: one per first path element.
	want := map[string]bool{}
	for p := range files {
		want[strings.SplitN(filepath.ToSlash(p), "/", 2)[0]] = true
	}
	for top := range want {
		link := filepath.Join(dir, top)
		target := filepath.Join("..data", top)
		if cur, err := os.Readlink(link); err == nil && cur == target {
			continue
		}
		_ = os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			return err
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, "..") || want[n] {
			continue
		}
		if e.Type()&os.ModeSymlink != 0 {
			_ = os.Remove(filepath.Join(dir, n))
		}
	}
	if oldTarget != "" && oldTarget != filepath.Base(tsDir) {
		_ = os.RemoveAll(filepath.Join(dir, oldTarget))
	}
	return nil
}

// ownReadOnlyVolume gives a configMap, secret, downwardAPI or projected
// volume to the pod's fsGroup as the kubelet's SetVolumeOwnership does
// for read-only volumes: everything (symlinks too) gets the group;
// directories get r-x for owner and group and the setgid bit; the files'
// modes were widened by owner and group read before they were written.
func ownReadOnlyVolume(dir string, gid int64) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, -1, int(gid)); err != nil {
			return fmt.Errorf("fsGroup %d on %s: %w", gid, p, err)
		}
		if !d.IsDir() {
			return nil // files have their mode; a symlink's mode means nothing
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := info.Mode()&(fs.ModePerm|fs.ModeSticky) | 0o550 | fs.ModeSetgid
		return os.Chmod(p, mode)
	})
}

// sameContent reports whether dir holds exactly files.
func sameContent(dir string, files map[string]volumeFile) bool {
	n := 0
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		f, ok := files[rel]
		if !ok {
			return errors.New("extra")
		}
		b, err := os.ReadFile(p)
		if err != nil || string(b) != string(f.data) {
			return errors.New("differs")
		}
		fi, err := d.Info()
		if err != nil || fi.Mode().Perm() != f.mode.Perm() {
			return errors.New("mode differs")
		}
		n++
		return nil
	})
	return err == nil && n == len(files)
}

// containerMounts turns a container's volumeMounts into CRI mounts.
func (m *volumeManager) containerMounts(pod *corev1.Pod, c *corev1.Container) ([]*runtimeapi.Mount, error) {
	vols := map[string]*corev1.Volume{}
	for i := range pod.Spec.Volumes {
		vols[pod.Spec.Volumes[i].Name] = &pod.Spec.Volumes[i]
	}
	var out []*runtimeapi.Mount
	for _, vm := range c.VolumeMounts {
		v, ok := vols[vm.Name]
		if !ok {
			return nil, fmt.Errorf("volume %q not found in pod", vm.Name)
		}
		src := m.volumeDir(pod.UID, v)
		if v.HostPath != nil {
			src = v.HostPath.Path
		}
		if v.PersistentVolumeClaim != nil {
			dir, ok := m.claimDir(pod.UID, v.Name)
			if !ok {
				return nil, fmt.Errorf("volume %q: persistentVolumeClaim %q is not set up", v.Name, v.PersistentVolumeClaim.ClaimName)
			}
			src = dir
		}
		sub := vm.SubPath
		if vm.SubPathExpr != "" {
			vars := map[string]string{}
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					vars[e.Name] = e.Value
				} else if e.ValueFrom.FieldRef != nil {
					vars[e.Name], _ = m.a.podField(pod, e.ValueFrom.FieldRef.FieldPath, pod.Status.PodIP)
				}
			}
			sub = expand(vm.SubPathExpr, vars)
		}
		if sub != "" {
			clean := filepath.Clean(sub)
			if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
				return nil, fmt.Errorf("subPath %q must be a relative path inside the volume", sub)
			}
			full := filepath.Join(src, clean)
			resolved, err := filepath.EvalSymlinks(full)
			switch {
			case os.IsNotExist(err):
				if err := os.MkdirAll(full, 0o777); err != nil {
					return nil, err
				}
			case err != nil:
				return nil, err
			default:
				base, _ := filepath.EvalSymlinks(src)
				if resolved != base && !strings.HasPrefix(resolved, base+string(os.PathSeparator)) {
					return nil, fmt.Errorf("subPath %q escapes volume %q", sub, vm.Name)
				}
				full = resolved
			}
			src = full
		}
		mnt := &runtimeapi.Mount{ContainerPath: vm.MountPath, HostPath: src, Readonly: vm.ReadOnly}
		if vm.MountPropagation != nil {
			switch *vm.MountPropagation {
			case corev1.MountPropagationHostToContainer:
				mnt.Propagation = runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER
			case corev1.MountPropagationBidirectional:
				mnt.Propagation = runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL
			}
		}
		// configMap, secret, downwardAPI and projected volumes are
		// read-only in the container.
		if v.ConfigMap != nil || v.Secret != nil || v.DownwardAPI != nil || v.Projected != nil {
			mnt.Readonly = true
		}
		if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ReadOnly {
			mnt.Readonly = true
		}
		out = append(out, mnt)
	}
	return out, nil
}

// teardown unmounts and removes everything the agent keeps for pod uid.
func (m *volumeManager) teardown(uid types.UID) error {
	dir := m.a.cfg.podDir(string(uid))
	if err := m.a.cfg.Mounter.UnmountAll(dir); err != nil {
		return fmt.Errorf("unmount volumes of %s: %w", uid, err)
	}
	if err := removeAllNoMounts(dir); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.ready, uid)
	delete(m.claimDirs, uid)
	m.mu.Unlock()
	m.tokens.forget(uid)
	return nil
}

// refreshLoop rewrites configMap, secret, downwardAPI and projected
// volumes of running pods when their sources changed.
func (m *volumeManager) refreshLoop(ctx context.Context) {
	t := time.NewTicker(m.a.cfg.VolumeRefreshPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		uids := make([]types.UID, 0, len(m.ready))
		for uid := range m.ready {
			uids = append(uids, uid)
		}
		m.mu.Unlock()
		sort.Slice(uids, func(i, j int) bool { return uids[i] < uids[j] })
		for _, uid := range uids {
			pod, ok := m.a.podByUID(uid)
			if !ok || pod.DeletionTimestamp != nil || isTerminal(pod.Status.Phase) {
				continue
			}
			for i := range pod.Spec.Volumes {
				v := &pod.Spec.Volumes[i]
				if v.ConfigMap == nil && v.Secret == nil && v.DownwardAPI == nil && v.Projected == nil {
					continue
				}
				if err := m.setupVolume(ctx, pod, v, true); err != nil {
					m.a.log.Debug("refresh volume", "pod", pod.Namespace+"/"+pod.Name, "volume", v.Name, "err", err)
				}
			}
		}
	}
}

// complete reports whether dir holds a volume's content written whole
// (writeAtomic's ..data link).
func complete(dir string) bool {
	_, err := os.Readlink(filepath.Join(dir, "..data"))
	return err == nil
}
