package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"
)

// Static pods: Pod manifests in a directory (Config.ManifestDir, the
// kubelet's --pod-manifest-path) run without any master; each appears in
// the API as a mirror pod (the kubelet's annotations and name).
const (
	annConfigSource = "kubernetes.io/config.source"
	annConfigHash   = "kubernetes.io/config.hash"
	annConfigMirror = "kubernetes.io/config.mirror"
	sourceFile      = "file"
)

// isMirrorPod: the API's copy of a static pod.
func isMirrorPod(p *corev1.Pod) bool {
	_, ok := p.Annotations[annConfigMirror]
	return ok
}

// isStaticPod: a pod read from a manifest file.
func isStaticPod(p *corev1.Pod) bool {
	return p.Annotations[annConfigSource] == sourceFile && !isMirrorPod(p)
}

// staticPods is the set of static pods the agent runs, by UID.
type staticPods struct {
	mu   sync.Mutex
	pods map[types.UID]*corev1.Pod
	// errs remembers the last error per file, logged once.
	errs map[string]string
	// mirrors maps a static pod's UID to its mirror pod's UID (status
	// goes to the mirror).
	mirrors map[types.UID]types.UID
}

func newStaticPods() *staticPods {
	return &staticPods{pods: map[types.UID]*corev1.Pod{}, errs: map[string]string{}, mirrors: map[types.UID]types.UID{}}
}

func (s *staticPods) mirrorOf(uid types.UID) (types.UID, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.mirrors[uid]
	return m, ok
}

func (s *staticPods) byName(ns, name string) (*corev1.Pod, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.pods {
		if p.Namespace == ns && p.Name == name {
			return p, true
		}
	}
	return nil, false
}

func (s *staticPods) isStatic(uid types.UID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.pods[uid]
	return ok
}

// readManifest decodes one Pod manifest (YAML or JSON) and makes it the
// node's static pod: name <name>-<node>, bound to the node, a UID and
// config hash derived from the node, the file's path and its content (an
// edited file is a new pod, as with the kubelet).
func readManifest(path, node string) (*corev1.Pod, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var p corev1.Pod
	if err := yaml.UnmarshalStrict(b, &p); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if p.Kind != "" && p.Kind != "Pod" {
		return nil, fmt.Errorf("kind %q: only Pod manifests run as static pods", p.Kind)
	}
	if p.Name == "" {
		return nil, fmt.Errorf("no metadata.name")
	}
	if len(p.Spec.Containers) == 0 {
		return nil, fmt.Errorf("no containers")
	}
	sum := sha256.Sum256([]byte(node + "\x00" + path + "\x00" + string(b)))
	hash := hex.EncodeToString(sum[:16])
	p.Name = p.Name + "-" + node
	if p.Namespace == "" {
		p.Namespace = metav1.NamespaceDefault
	}
	p.UID = types.UID(hash)
	p.Spec.NodeName = node
	if p.Spec.RestartPolicy == "" {
		p.Spec.RestartPolicy = corev1.RestartPolicyAlways
	}
	if p.Spec.DNSPolicy == "" {
		p.Spec.DNSPolicy = corev1.DNSClusterFirst
	}
	for i := range p.Spec.Containers {
		if p.Spec.Containers[i].TerminationMessagePolicy == "" {
			p.Spec.Containers[i].TerminationMessagePolicy = corev1.TerminationMessageReadFile
		}
	}
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	p.Annotations[annConfigSource] = sourceFile
	p.Annotations[annConfigHash] = hash
	p.CreationTimestamp = metav1.Now()
	return &p, nil
}

// staticPodLoop reads the manifest directory every second: new files
// start pods, edited ones replace theirs, removed ones stop theirs. Once
// the API is reachable it keeps each static pod's mirror pod.
func (a *Agent) staticPodLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		a.syncStaticPods()
		if a.Ready() {
			a.syncMirrorPods(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Agent) syncStaticPods() {
	s := a.static
	dir := a.cfg.ManifestDir
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		a.logStaticErr(dir, err)
		return
	}
	want := map[types.UID]*corev1.Pod{}
	for _, e := range entries {
		name := e.Name()
		ext := strings.ToLower(filepath.Ext(name))
		if e.IsDir() || strings.HasPrefix(name, ".") || (ext != ".yaml" && ext != ".yml" && ext != ".json") {
			continue
		}
		path := filepath.Join(dir, name)
		p, err := readManifest(path, a.cfg.NodeName)
		if err != nil {
			a.logStaticErr(path, err)
			continue
		}
		a.clearStaticErr(path)
		want[p.UID] = p
	}
	s.mu.Lock()
	var gone, added []*corev1.Pod
	for uid, p := range s.pods {
		if want[uid] == nil {
			gone = append(gone, p)
			delete(s.pods, uid)
			delete(s.mirrors, uid)
		}
	}
	for uid, p := range want {
		if s.pods[uid] == nil {
			s.pods[uid] = p
			added = append(added, p)
		}
	}
	s.mu.Unlock()
	for _, p := range gone {
		a.log.Info("static pod removed", "pod", p.Namespace+"/"+p.Name, "uid", p.UID)
		a.workers.remove(p)
	}
	for _, p := range added {
		a.log.Info("static pod added", "pod", p.Namespace+"/"+p.Name, "uid", p.UID)
		a.workers.update(p)
	}
}

func (a *Agent) logStaticErr(path string, err error) {
	s := a.static
	s.mu.Lock()
	seen := s.errs[path] == err.Error()
	s.errs[path] = err.Error()
	s.mu.Unlock()
	if !seen {
		a.log.Warn("static pod manifest not used", "file", path, "err", err)
	}
}

func (a *Agent) clearStaticErr(path string) {
	a.static.mu.Lock()
	delete(a.static.errs, path)
	a.static.mu.Unlock()
}

// syncMirrorPods makes the API hold one mirror pod per static pod (the
// file wins: a mirror deleted or of another version is made again) and
// none for static pods that are gone.
func (a *Agent) syncMirrorPods(ctx context.Context) {
	s := a.static
	s.mu.Lock()
	statics := make([]*corev1.Pod, 0, len(s.pods))
	for _, p := range s.pods {
		statics = append(statics, p)
	}
	s.mu.Unlock()
	sort.Slice(statics, func(i, j int) bool { return statics[i].Name < statics[j].Name })
	mirrors := map[string]*corev1.Pod{}
	for _, obj := range a.podInformer.GetStore().List() {
		if p := obj.(*corev1.Pod); isMirrorPod(p) && p.Spec.NodeName == a.cfg.NodeName {
			mirrors[p.Namespace+"/"+p.Name] = p
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	wanted := map[string]bool{}
	for _, sp := range statics {
		key := sp.Namespace + "/" + sp.Name
		wanted[key] = true
		m := mirrors[key]
		if m != nil && m.Annotations[annConfigMirror] == sp.Annotations[annConfigHash] && m.DeletionTimestamp == nil {
			s.mu.Lock()
			changed := false
			if s.pods[sp.UID] != nil && s.mirrors[sp.UID] != m.UID {
				s.mirrors[sp.UID] = m.UID
				changed = true
			}
			s.mu.Unlock()
			if changed {
				a.status.resend(sp.UID)
			}
			continue
		}
		if m != nil {
			// Another version, or being deleted: removed at once, made
			// again once the informer saw it go.
			a.deleteMirror(ctx, m)
			continue
		}
		if err := a.createMirror(ctx, sp); err != nil && !apierrors.IsAlreadyExists(err) {
			a.log.Warn("create mirror pod", "pod", key, "err", err)
		}
	}
	for key, m := range mirrors {
		if !wanted[key] {
			a.deleteMirror(ctx, m)
		}
	}
}

func (a *Agent) createMirror(ctx context.Context, sp *corev1.Pod) error {
	node, err := a.cfg.Client.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{ResourceVersion: "0"})
	if err != nil {
		return err
	}
	m := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: sp.Name, Namespace: sp.Namespace,
		Labels: sp.Labels, Annotations: map[string]string{}}, Spec: *sp.Spec.DeepCopy()}
	for k, v := range sp.Annotations {
		m.Annotations[k] = v
	}
	m.Annotations[annConfigMirror] = sp.Annotations[annConfigHash]
	ctrl := true
	m.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID, Controller: &ctrl}}
	_, err = a.cfg.Client.CoreV1().Pods(sp.Namespace).Create(ctx, m, metav1.CreateOptions{})
	if err == nil {
		a.log.Info("mirror pod created", "pod", sp.Namespace+"/"+sp.Name)
	}
	return err
}

func (a *Agent) deleteMirror(ctx context.Context, m *corev1.Pod) {
	zero := int64(0)
	uid := m.UID
	err := a.cfg.Client.CoreV1().Pods(m.Namespace).Delete(ctx, m.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		a.log.Warn("delete mirror pod", "pod", m.Namespace+"/"+m.Name, "err", err)
		return
	}
	a.log.Info("mirror pod deleted", "pod", m.Namespace+"/"+m.Name)
}
