package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// PersistentVolumePlugin makes a bound PersistentVolume usable by a pod on
// this node. It is the seam where a CSI node plugin would plug in; Skiff
// builds in the local and hostPath plugin only.
type PersistentVolumePlugin interface {
	// Name names the plugin in errors and logs.
	Name() string
	// CanSetUp reports whether the plugin handles pv.
	CanSetUp(pv *corev1.PersistentVolume) bool
	// SetUp makes pv ready for pod and returns the host directory to
	// bind-mount into the containers.
	SetUp(ctx context.Context, pod *corev1.Pod, pv *corev1.PersistentVolume) (string, error)
}

// localVolumePlugin serves local and hostPath volumes: the directory is on
// this node already (hostPath DirectoryOrCreate makes it, as the built-in
// local-path provisioner's volumes ask).
type localVolumePlugin struct{}

func (localVolumePlugin) Name() string { return "kubernetes.io/local-volume" }

func (localVolumePlugin) CanSetUp(pv *corev1.PersistentVolume) bool {
	return pv.Spec.Local != nil || pv.Spec.HostPath != nil
}

func (localVolumePlugin) SetUp(_ context.Context, _ *corev1.Pod, pv *corev1.PersistentVolume) (string, error) {
	if h := pv.Spec.HostPath; h != nil {
		if h.Type != nil && *h.Type == corev1.HostPathDirectoryOrCreate {
			// World-writable as local-path-provisioner makes them, so that
			// pods running as any user can write.
			if _, err := os.Stat(h.Path); errors.Is(err, fs.ErrNotExist) {
				if err := os.MkdirAll(h.Path, 0o777); err != nil {
					return "", err
				}
				if err := os.Chmod(h.Path, 0o777); err != nil { // past the umask
					return "", err
				}
			}
		}
		if err := setupHostPath(h); err != nil {
			return "", err
		}
		return h.Path, nil
	}
	st, err := os.Stat(pv.Spec.Local.Path)
	if err != nil {
		return "", fmt.Errorf("local volume %s: %w", pv.Name, err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("local volume %s: %s is not a directory (block volumes are not supported)", pv.Name, pv.Spec.Local.Path)
	}
	return pv.Spec.Local.Path, nil
}

// setupClaim resolves a persistentVolumeClaim volume to its bound volume,
// sets it up with the plugin that handles it and records the directory to
// mount.
func (m *volumeManager) setupClaim(ctx context.Context, pod *corev1.Pod, v *corev1.Volume) error {
	name := v.PersistentVolumeClaim.ClaimName
	record := filepath.Join(m.volumeDir(pod.UID, v), "path")
	pvc, err := m.a.cfg.Client.CoreV1().PersistentVolumeClaims(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if dir, ok := recordedClaimDir(record); ok && !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err) {
			// The API is out of reach (node autonomy): the directory set
			// up before the agent restarted is used again.
			m.a.log.Info("persistent volume from the local record: the API is out of reach", "pod", pod.Namespace+"/"+pod.Name, "volume", v.Name, "err", err)
			m.recordClaimDir(pod.UID, v.Name, dir)
			return nil
		}
		return fmt.Errorf("get persistentvolumeclaim %q: %w", name, err)
	}
	if pvc.DeletionTimestamp != nil {
		return fmt.Errorf("persistentvolumeclaim %q is being deleted", name)
	}
	if pvc.Spec.VolumeName == "" || pvc.Status.Phase != corev1.ClaimBound {
		return fmt.Errorf("persistentvolumeclaim %q is not bound", name)
	}
	pv, err := m.a.cfg.Client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get persistentvolume %q: %w", pvc.Spec.VolumeName, err)
	}
	if ref := pv.Spec.ClaimRef; ref == nil || ref.UID != pvc.UID {
		return fmt.Errorf("persistentvolume %q is not bound to claim %q", pv.Name, name)
	}
	var plugin PersistentVolumePlugin
	for _, p := range m.plugins {
		if p.CanSetUp(pv) {
			plugin = p
			break
		}
	}
	if plugin == nil {
		return fmt.Errorf("persistentvolume %q: no volume plugin on this node handles its source (local and hostPath only)", pv.Name)
	}
	dir, err := plugin.SetUp(ctx, pod, pv)
	if err != nil {
		return fmt.Errorf("%s: %w", plugin.Name(), err)
	}
	if fsg := fsGroupOf(pod); fsg != nil && !v.PersistentVolumeClaim.ReadOnly {
		if err := applyFSGroup(dir, *fsg); err != nil {
			return fmt.Errorf("fsGroup %d on %s: %w", *fsg, dir, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(record), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(record, []byte(dir), 0o600); err != nil {
		return err
	}
	m.recordClaimDir(pod.UID, v.Name, dir)
	return nil
}

func (m *volumeManager) recordClaimDir(uid types.UID, volume, dir string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.claimDirs[uid] == nil {
		m.claimDirs[uid] = map[string]string{}
	}
	m.claimDirs[uid][volume] = dir
}

// recordedClaimDir reads the directory a claim volume had, if it still
// exists.
func recordedClaimDir(record string) (string, bool) {
	b, err := os.ReadFile(record)
	if err != nil {
		return "", false
	}
	dir := string(b)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", false
	}
	return dir, true
}

// claimDir returns the host directory recorded for a pod's claim volume.
func (m *volumeManager) claimDir(uid types.UID, volume string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.claimDirs[uid][volume]
	return d, ok
}

func fsGroupOf(pod *corev1.Pod) *int64 {
	if sc := pod.Spec.SecurityContext; sc != nil {
		return sc.FSGroup
	}
	return nil
}

// applyFSGroup gives group gid ownership of the volume as the kubelet does
// for volumes that support ownership management: every file gets the
// group, group read/write (and execute where the owner has it), and
// directories the setgid bit, so new files inherit the group. As with
// fsGroupChangePolicy OnRootMismatch, nothing is walked when the root
// already has the group and the setgid bit.
func applyFSGroup(dir string, gid int64) error {
	if ok, err := fsGroupApplied(dir, gid); err != nil || ok {
		return err
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if err := os.Lchown(p, -1, int(gid)); err != nil {
			return err
		}
		mode := info.Mode() | 0o060
		if info.Mode()&0o100 != 0 {
			mode |= 0o010
		}
		if d.IsDir() {
			mode |= 0o010 | fs.ModeSetgid
		}
		return os.Chmod(p, mode&(fs.ModePerm|fs.ModeSetgid|fs.ModeSticky))
	})
}

var errNoStat = errors.New("no owner information")
