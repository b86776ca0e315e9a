// Package addons is the addon manager: manifests dropped in a master's
// <data-dir>/manifests/ are applied by the leader and kept as written (k3s's
// auto-deploying manifests and kube-addon-manager's modes are the model).
// This package scans a directory, parses manifests, and reconciles the
// cluster with them through the API (client-side apply); server/addons.go
// publishes each master's files and runs the reconciler on the leader.
package addons

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const (
	// LabelAddon names the addon (file name without extension) an object
	// was applied from, as k3s's objectset label: removing the file
	// deletes exactly the objects that carry its name.
	LabelAddon = "skiff.io/addon"
	// LabelMode is kube-addon-manager's mode label: Reconcile (the
	// default) or EnsureExists.
	LabelMode = "addonmanager.kubernetes.io/mode"
	// AnnotationLastApplied is kubectl's client-side apply annotation.
	AnnotationLastApplied = "kubectl.kubernetes.io/last-applied-configuration"
	// MaxFileSize bounds one manifest file.
	MaxFileSize = 4 << 20
	// skipSuffix disables a manifest: foo.yaml.skip disables foo.yaml.
	skipSuffix = ".skip"
)

// Mode is how an object is kept.
type Mode string

const (
	// ModeReconcile: created if missing, the fields the manifest sets are
	// restored when edited, deleted when the manifest drops it.
	ModeReconcile Mode = "Reconcile"
	// ModeEnsureExists: created if missing, never updated, never deleted.
	ModeEnsureExists Mode = "EnsureExists"
)

// File is one manifest file of a master's directory as published to the
// leader: no content, which stays on the master (it may hold Secrets).
type File struct {
	Name    string    `json:"name"`
	SHA256  string    `json:"sha256,omitempty"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"modTime"`
	// Skipped: a NAME.skip file disables it (its objects are left alone).
	Skipped bool `json:"skipped,omitempty"`
	// Error: the file could not be read.
	Error string `json:"error,omitempty"`
}

// Addon is the addon's name: the file name without its extension. It is
// the value of LabelAddon on the objects the file created.
func (f File) Addon() string { return strings.TrimSuffix(f.Name, filepath.Ext(f.Name)) }

// ScannedFile is a File with its content, as read by Scan.
type ScannedFile struct {
	File
	Content []byte
}

// IsManifest reports whether a file name is a manifest's.
func IsManifest(name string) bool {
	switch filepath.Ext(name) {
	case ".yaml", ".yml", ".json":
		return !strings.HasPrefix(name, ".")
	}
	return false
}

// Scan reads the manifests of dir (not its subdirectories). A missing
// directory has none. Files are sorted by name.
func Scan(dir string) ([]ScannedFile, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read manifests dir: %w", err)
	}
	skipped := map[string]bool{}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), skipSuffix) {
			skipped[strings.TrimSuffix(e.Name(), skipSuffix)] = true
		}
	}
	var out []ScannedFile
	seen := map[string]bool{}
	add := func(f ScannedFile) {
		seen[f.Name] = true
		out = append(out, f)
	}
	for _, e := range entries {
		name := e.Name()
		if !IsManifest(name) {
			continue
		}
		f := ScannedFile{File: File{Name: name, Skipped: skipped[name]}}
		info, err := os.Stat(filepath.Join(dir, name)) // follows symlinks
		switch {
		case err != nil:
			f.Error = err.Error()
		case !info.Mode().IsRegular():
			continue
		case info.Size() > MaxFileSize:
			f.Size, f.ModTime = info.Size(), info.ModTime().UTC()
			f.Error = fmt.Sprintf("larger than %d bytes", MaxFileSize)
		default:
			f.Size, f.ModTime = info.Size(), info.ModTime().UTC()
			if !f.Skipped {
				f.Content, err = readLimited(filepath.Join(dir, name))
				if err != nil {
					f.Error = err.Error()
				} else {
					f.SHA256 = Checksum(f.Content)
				}
			}
		}
		add(f)
	}
	// A skip marker whose manifest is gone still disables the addon (a
	// file renamed to foo.yaml.skip keeps its objects, as k3s does).
	for name := range skipped {
		if IsManifest(name) && !seen[name] {
			add(ScannedFile{File: File{Name: name, Skipped: true}})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("larger than %d bytes", MaxFileSize)
	}
	return b, nil
}

// Checksum is the checksum published for a file's content.
func Checksum(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// ValidateAddonName checks that an addon name can be a label value.
func ValidateAddonName(name string) error {
	if errs := validation.IsValidLabelValue(name); len(errs) > 0 || name == "" {
		return fmt.Errorf("addon name %q (the file name without extension) is not a valid label value: %s", name, strings.Join(errs, "; "))
	}
	return nil
}

// Parse decodes a manifest: YAML documents separated by ---, or JSON;
// List kinds are flattened. Every object gets the addon label; each must
// name its apiVersion, kind and metadata.name, and a known mode.
func Parse(addon string, content []byte) ([]*unstructured.Unstructured, error) {
	if err := ValidateAddonName(addon); err != nil {
		return nil, err
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(content)))
	var out []*unstructured.Unstructured
	for doc := 1; ; doc++ {
		b, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		js, err := yaml.YAMLToJSON(b)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if t := bytes.TrimSpace(js); len(t) == 0 || string(t) == "null" {
			continue // empty, or comments only
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(js); err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		items := []*unstructured.Unstructured{u}
		if u.IsList() {
			l, err := u.ToList()
			if err != nil {
				return nil, fmt.Errorf("document %d: %w", doc, err)
			}
			items = items[:0]
			for i := range l.Items {
				items = append(items, &l.Items[i])
			}
		}
		for i, o := range items {
			where := fmt.Sprintf("document %d", doc)
			if u.IsList() {
				where = fmt.Sprintf("document %d, item %d", doc, i+1)
			}
			if err := check(o); err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			labels := o.GetLabels()
			if labels == nil {
				labels = map[string]string{}
			}
			labels[LabelAddon] = addon
			o.SetLabels(labels)
			out = append(out, o)
		}
	}
	return out, nil
}

func check(o *unstructured.Unstructured) error {
	switch {
	case o.GetAPIVersion() == "":
		return errors.New("no apiVersion")
	case o.GetKind() == "":
		return errors.New("no kind")
	case o.GetName() == "":
		return fmt.Errorf("%s has no metadata.name", o.GetKind())
	}
	_, err := ModeOf(o)
	return err
}

// ModeOf is an object's mode: its addonmanager.kubernetes.io/mode label
// (or annotation), Reconcile if it has none.
func ModeOf(o *unstructured.Unstructured) (Mode, error) {
	v, ok := o.GetLabels()[LabelMode]
	if !ok {
		v = o.GetAnnotations()[LabelMode]
	}
	switch Mode(v) {
	case "", ModeReconcile:
		return ModeReconcile, nil
	case ModeEnsureExists:
		return ModeEnsureExists, nil
	}
	return "", fmt.Errorf("%s %s: %s is %q: want Reconcile or EnsureExists", o.GetKind(), o.GetName(), LabelMode, v)
}

// kindOrder is the order objects are applied in: what others depend on
// first (namespaces, then identities and their permissions, then
// configuration, then services, then workloads). Kinds not listed come
// after, and deletions go in the reverse order.
var kindOrder = []string{
	"Namespace", "CustomResourceDefinition", "PriorityClass", "StorageClass",
	"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
	"ResourceQuota", "LimitRange", "ConfigMap", "Secret",
	"PersistentVolume", "PersistentVolumeClaim",
	"Service", "Endpoints", "EndpointSlice", "NetworkPolicy", "PodDisruptionBudget",
	"DaemonSet", "Deployment", "StatefulSet", "ReplicaSet", "ReplicationController",
	"Job", "CronJob", "Pod",
}

// KindRank is the position of kind in the apply order.
func KindRank(kind string) int {
	for i, k := range kindOrder {
		if k == kind {
			return i
		}
	}
	return len(kindOrder)
}

// SortForApply orders objects for applying, stably (objects of one rank
// keep the manifest's order).
func SortForApply(objs []*unstructured.Unstructured) {
	sort.SliceStable(objs, func(i, j int) bool { return KindRank(objs[i].GetKind()) < KindRank(objs[j].GetKind()) })
}
