package admission

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/klog/v2"
	psaadmission "k8s.io/pod-security-admission/admission"
	psaconfig "k8s.io/pod-security-admission/admission/api"
	"k8s.io/pod-security-admission/admission/api/load"
	"k8s.io/pod-security-admission/admission/api/validation"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/metrics"
	"k8s.io/pod-security-admission/policy"

	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/auth"
)

// PodSecurityConfig is kube-apiserver's PodSecurity plugin configuration
// (PodSecurityConfiguration, pod-security.admission.config.k8s.io): the
// levels of namespaces without pod-security.kubernetes.io labels and the
// exempt users, namespaces and runtime classes.
type PodSecurityConfig = psaconfig.PodSecurityConfiguration

// DefaultPodSecurityConfig is Skiff's cluster default: enforce baseline,
// warn restricted, audit privileged (nothing logged unless a namespace
// asks), all at "latest"; kube-system exempt.
func DefaultPodSecurityConfig() *PodSecurityConfig {
	latest := string(psaapi.VersionLatest)
	return &PodSecurityConfig{
		Defaults: psaconfig.PodSecurityDefaults{
			Enforce: string(psaapi.LevelBaseline), EnforceVersion: latest,
			Audit: string(psaapi.LevelPrivileged), AuditVersion: latest,
			Warn: string(psaapi.LevelRestricted), WarnVersion: latest,
		},
		Exemptions: psaconfig.PodSecurityExemptions{Namespaces: []string{metav1.NamespaceSystem}},
	}
}

// LoadPodSecurityConfig reads a PodSecurityConfiguration file (the file
// kube-apiserver embeds in its AdmissionConfiguration and k3s takes as
// --pod-security-admission-config-file). It replaces the defaults
// entirely: levels it leaves out are "privileged", as upstream, and only
// the namespaces it lists are exempt. An empty path is
// DefaultPodSecurityConfig.
func LoadPodSecurityConfig(path string) (*PodSecurityConfig, error) {
	if path == "" {
		return DefaultPodSecurityConfig(), nil
	}
	cfg, err := load.LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("pod security configuration %s: %w", path, err)
	}
	if err := ValidatePodSecurityConfig(cfg); err != nil {
		return nil, fmt.Errorf("pod security configuration %s: %w", path, err)
	}
	return cfg, nil
}

// ValidatePodSecurityConfig checks levels, versions and exemptions as
// kube-apiserver does.
func ValidatePodSecurityConfig(cfg *PodSecurityConfig) error {
	if cfg == nil {
		return errors.New("no pod security configuration")
	}
	return validation.ValidatePodSecurityConfiguration(cfg).ToAggregate()
}

// podSecurity is Kubernetes' PodSecurity admission plugin, the upstream
// library's admission and policy evaluator over Skiff's state: pods are
// checked against their namespace's enforce level (403 naming the failed
// checks); pods and the pod templates of workload kinds against the warn
// level (Warning headers) and the audit level (the request's audit event
// annotations, and an Info log line); a namespace whose enforce
// label is raised gets warnings for its existing pods that would fail it.
type podSecurity struct {
	adm *psaadmission.Admission
}

// SetPodSecurity replaces the PodSecurity configuration (the default is
// DefaultPodSecurityConfig).
func (c *Chain) SetPodSecurity(cfg *PodSecurityConfig) error {
	ps, err := c.newPodSecurity(cfg)
	if err != nil {
		return err
	}
	c.podSecurity = ps
	return nil
}

func (c *Chain) newPodSecurity(cfg *PodSecurityConfig) (*podSecurity, error) {
	if cfg == nil {
		return nil, errors.New("pod security: no configuration")
	}
	ev, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		return nil, fmt.Errorf("pod security evaluator: %w", err)
	}
	src := psaSource{c}
	adm := &psaadmission.Admission{
		Configuration:    cfg,
		Evaluator:        ev,
		Metrics:          nopMetrics{},
		PodSpecExtractor: psaadmission.DefaultPodSpecExtractor{},
		NamespaceGetter:  src,
		PodLister:        src,
	}
	if err := adm.CompleteConfiguration(); err != nil {
		return nil, fmt.Errorf("pod security configuration: %w", err)
	}
	if err := adm.ValidateConfiguration(); err != nil {
		return nil, fmt.Errorf("pod security configuration: %w", err)
	}
	return &podSecurity{adm: adm}, nil
}

// checkPodSecurity runs PodSecurity on a create or update of a pod, a
// namespace or a kind with a pod template.
func (c *Chain) checkPodSecurity(ctx context.Context, a *Attributes) error {
	if c.podSecurity == nil {
		return nil
	}
	gr := a.Kind.GroupResource()
	if gr != namespacesResource && !c.podSecurity.adm.PodSpecExtractor.HasPodSpec(gr) {
		return nil
	}
	if gr != podsResource && gr != namespacesResource && a.Operation == Update && sameTemplate(c.podSecurity.adm, a) {
		// A workload update that leaves its pod template alone (a scale,
		// a status-like change) has nothing new to warn about.
		return nil
	}
	attrs := &psaapi.AttributesRecord{
		Name:        a.Name,
		Namespace:   a.Namespace,
		Kind:        a.Kind.GVK,
		Resource:    schema.GroupVersionResource{Group: a.Kind.GVK.Group, Version: a.Kind.GVK.Version, Resource: a.Kind.Resource},
		Operation:   admissionv1.Operation(a.Operation),
		Subresource: a.Subresource,
		Object:      a.Object,
		OldObject:   a.OldObject,
	}
	if gr == namespacesResource {
		// A namespace's own request carries its name as the namespace.
		attrs.Namespace = a.Name
	}
	if u, ok := auth.UserFrom(ctx); ok {
		attrs.Username = u.Name
	}
	ctx = klog.NewContext(ctx, logr.FromSlogHandler(c.log.With("plugin", "PodSecurity").Handler()))
	resp := c.podSecurity.adm.Validate(ctx, attrs)
	for _, w := range resp.Warnings {
		warn(ctx, w)
	}
	// The request's audit event carries the decision, as kube-apiserver's
	// (pod-security.kubernetes.io/enforce-policy, audit-violations...).
	for k, v := range resp.AuditAnnotations {
		audit.AddAuditAnnotation(ctx, psaapi.AuditAnnotationPrefix+k, v)
	}
	if v, ok := resp.AuditAnnotations[psaapi.AuditViolationsAnnotationKey]; ok {
		c.log.Info("pod security audit", "resource", gr.String(), "namespace", a.Namespace, "name", a.Name,
			"user", attrs.Username, "operation", a.Operation, "pod-security.kubernetes.io/"+psaapi.AuditViolationsAnnotationKey, v)
	}
	if v, ok := resp.AuditAnnotations["error"]; ok {
		c.log.Warn("pod security evaluation error", "resource", gr.String(), "namespace", a.Namespace, "name", a.Name, "error", v)
	}
	if resp.Allowed {
		return nil
	}
	if resp.Result == nil {
		return apierrors.NewForbidden(gr, a.Name, errors.New("denied by PodSecurity"))
	}
	return &apierrors.StatusError{ErrStatus: *resp.Result}
}

var (
	namespacesResource = corev1.Resource("namespaces")
	podsResource       = corev1.Resource("pods")
)

// sameTemplate reports whether an update leaves a workload's pod template
// (metadata and spec) as it was.
func sameTemplate(adm *psaadmission.Admission, a *Attributes) bool {
	if a.OldObject == nil {
		return false
	}
	newMeta, newSpec, err1 := adm.PodSpecExtractor.ExtractPodSpec(a.Object)
	oldMeta, oldSpec, err2 := adm.PodSpecExtractor.ExtractPodSpec(a.OldObject)
	if err1 != nil || err2 != nil {
		return false
	}
	return reflect.DeepEqual(newSpec, oldSpec) && (newMeta == nil) == (oldMeta == nil) &&
		(newMeta == nil || reflect.DeepEqual(newMeta.Labels, oldMeta.Labels) && reflect.DeepEqual(newMeta.Annotations, oldMeta.Annotations))
}

// psaSource reads namespaces and pods for the library from the local
// state, as the other plugins do.
type psaSource struct{ c *Chain }

func (s psaSource) snapshot(ctx context.Context) (*state.Snapshot, error) {
	snap, err := s.c.reader.Read(ctx, false, 0)
	if err != nil {
		return nil, fmt.Errorf("pod security: read state: %w", err)
	}
	return snap, nil
}

// GetNamespace returns a namespace (NotFound if it does not exist).
func (s psaSource) GetNamespace(ctx context.Context, name string) (*corev1.Namespace, error) {
	kind, ok := s.c.reg.Lookup("", "v1", "namespaces")
	if !ok {
		return nil, errors.New("pod security: namespaces are not served")
	}
	snap, err := s.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	o := snap.Get(kind.Key("", name))
	if o == nil {
		return nil, apierrors.NewNotFound(namespacesResource, name)
	}
	obj, err := kind.Decode(o)
	if err != nil {
		return nil, fmt.Errorf("pod security: decode namespace %s: %w", name, err)
	}
	return obj.(*corev1.Namespace), nil
}

// ListPods returns the pods of a namespace.
func (s psaSource) ListPods(ctx context.Context, namespace string) ([]*corev1.Pod, error) {
	kind, ok := s.c.reg.Lookup("", "v1", "pods")
	if !ok {
		return nil, errors.New("pod security: pods are not served")
	}
	snap, err := s.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	var (
		out     []*corev1.Pod
		listErr error
	)
	snap.List(kind.StorageResource(), namespace, "", func(o *state.Object) bool {
		obj, err := kind.Decode(o)
		if err != nil {
			listErr = fmt.Errorf("pod security: decode pod %s: %w", o.Key, err)
			return false
		}
		out = append(out, obj.(*corev1.Pod))
		return ctx.Err() == nil
	})
	return out, listErr
}

// nopMetrics drops the library's evaluation counts: Skiff's API server
// exports no Prometheus metrics yet.
type nopMetrics struct{}

func (nopMetrics) RecordEvaluation(metrics.Decision, psaapi.LevelVersion, metrics.Mode, psaapi.Attributes) {
}
func (nopMetrics) RecordExemption(psaapi.Attributes)   {}
func (nopMetrics) RecordError(bool, psaapi.Attributes) {}
