// Package registry describes every kind the Skiff API serves: its group,
// version and resource, scope, short names, defaulting, validation, the
// rules of what an update may change, selectable fields and table columns.
// The API server (package apiserver) is generic and asks the registry.
package registry

import (
	"fmt"
	"sort"
	"sync/atomic"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	networkingv1 "k8s.io/api/networking/v1"
	nodev1 "k8s.io/api/node/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	custommetricsv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	externalmetricsv1beta1 "k8s.io/metrics/pkg/apis/external_metrics/v1beta1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// Registry holds the served kinds and the scheme their objects live in.
type Registry struct {
	scheme *runtime.Scheme
	codecs serializer.CodecFactory
	kinds  []*Kind
	byGVR  map[schema.GroupVersionResource]*Kind
	// byStorage maps the store's resource ("configmaps", "apps/deployments").
	byStorage map[string]*Kind
	// custom holds the custom resources served now (customresource.go).
	custom atomic.Pointer[customSet]
	// converter converts the objects of CRDs with the Webhook conversion
	// strategy (customconversion.go).
	converter CustomConverter
	// hpaScaleToZero is the HPAScaleToZero feature gate: HPAs may have
	// minReplicas 0 (SetHPAScaleToZero).
	hpaScaleToZero atomic.Bool
}

// New returns the registry of Skiff's built-in kinds.
func New() *Registry {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme,
		admissionregistrationv1.AddToScheme,
		appsv1.AddToScheme,
		coordinationv1.AddToScheme,
		batchv1.AddToScheme,
		certificatesv1.AddToScheme,
		discoveryv1.AddToScheme,
		eventsv1.AddToScheme,
		flowcontrolv1.AddToScheme,
		rbacv1.AddToScheme,
		policyv1.AddToScheme,
		autoscalingv1.AddToScheme,
		autoscalingv2.AddToScheme,
		authenticationv1.AddToScheme,
		authorizationv1.AddToScheme,
		nodev1.AddToScheme,
		schedulingv1.AddToScheme,
		networkingv1.AddToScheme,
		storagev1.AddToScheme,
		apiextensionsv1.AddToScheme,
		metricsv1beta1.AddToScheme,
		apiregistrationv1.AddToScheme,
		custommetricsv1beta2.AddToScheme,
		externalmetricsv1beta1.AddToScheme,
		metav1.AddMetaToScheme,
	} {
		if err := add(scheme); err != nil {
			// The types are static; an error is a programming error.
			panic(fmt.Sprintf("registry: build scheme: %v", err))
		}
	}
	// HorizontalPodAutoscaler's versions convert as kube-apiserver's do
	// (the field manager converts objects to its managers' versions).
	if err := addHPAConversions(scheme); err != nil {
		panic(fmt.Sprintf("registry: build scheme: %v", err))
	}
	if err := addEventConversions(scheme); err != nil {
		panic(fmt.Sprintf("registry: build scheme: %v", err))
	}
	// DeleteOptions and the other option types under meta.k8s.io/v1 too.
	metav1.AddToGroupVersion(scheme, metav1.SchemeGroupVersion)
	r := &Registry{
		scheme:    scheme,
		codecs:    serializer.NewCodecFactory(scheme),
		byGVR:     map[schema.GroupVersionResource]*Kind{},
		byStorage: map[string]*Kind{},
	}
	for _, k := range []*Kind{
		namespaceKind(),
		configMapKind(),
		secretKind(),
		podKind(),
		serviceKind(),
		nodeKind(),
		eventKind(),
		serviceAccountKind(),
		endpointsKind(),
		leaseKind(),
		deploymentKind(),
		replicaSetKind(),
		resourceQuotaKind(),
		limitRangeKind(),
		statefulSetKind(),
		daemonSetKind(),
		controllerRevisionKind(),
		jobKind(),
		cronJobKind(),
		endpointSliceKind(),
		eventV1Kind(),
		roleKind(),
		roleBindingKind(),
		clusterRoleKind(),
		clusterRoleBindingKind(),
		podDisruptionBudgetKind(),
		replicationControllerKind(),
		priorityClassKind(),
		networkPolicyKind(),
		ingressKind(),
		ingressClassKind(),
		ipAddressKind(),
		serviceCIDRKind(),
		certificateSigningRequestKind(),
		selfSubjectAccessReviewKind(),
		subjectAccessReviewKind(),
		localSubjectAccessReviewKind(),
		selfSubjectRulesReviewKind(),
		tokenReviewKind(),
		selfSubjectReviewKind(),
		runtimeClassKind(),
		podTemplateKind(),
		componentStatusKind(),
		nodeMetricsKind(),
		podMetricsKind(),
		persistentVolumeKind(),
		persistentVolumeClaimKind(),
		storageClassKind(),
		volumeAttachmentKind(),
		csiNodeKind(),
		csiDriverKind(),
		csiStorageCapacityKind(),
		customResourceDefinitionKind(r),
		mutatingWebhookConfigurationKind(),
		validatingWebhookConfigurationKind(),
		validatingAdmissionPolicyKind(),
		validatingAdmissionPolicyBindingKind(),
		flowSchemaKind(),
		priorityLevelConfigurationKind(),
		apiServiceKind(),
		// v2 first: discovery prefers the first version registered.
		hpaKind(&r.hpaScaleToZero),
		hpaV1Kind(&r.hpaScaleToZero),
		customMetricsKind(),
		externalMetricsKind(),
	} {
		r.register(k)
	}
	return r
}

func (r *Registry) register(k *Kind) {
	k.init()
	gvr := k.GVK.GroupVersion().WithResource(k.Resource)
	if _, dup := r.byGVR[gvr]; dup {
		panic(fmt.Sprintf("registry: %s registered twice", gvr))
	}
	r.kinds = append(r.kinds, k)
	r.byGVR[gvr] = k
	if k.storedAs == nil {
		// The stored version is the one that reads the store.
		r.byStorage[k.StorageResource()] = k
	}
}

// Scheme is the runtime.Scheme holding every served type plus the meta
// types (Status, DeleteOptions, WatchEvent, Table).
func (r *Registry) Scheme() *runtime.Scheme { return r.scheme }

// Codecs is the codec factory over Scheme (JSON, YAML, protobuf).
func (r *Registry) Codecs() serializer.CodecFactory { return r.codecs }

// Lookup returns the kind served at group/version/resource.
func (r *Registry) Lookup(group, version, resource string) (*Kind, bool) {
	gvr := schema.GroupVersionResource{Group: group, Version: version, Resource: resource}
	if k, ok := r.byGVR[gvr]; ok {
		return k, true
	}
	k, ok := r.customSet().byGVR[gvr]
	return k, ok
}

// ByStorageResource returns the kind stored under the state.Key resource
// res ("configmaps", "apps/deployments").
func (r *Registry) ByStorageResource(res string) (*Kind, bool) {
	if k, ok := r.byStorage[res]; ok {
		return k, true
	}
	k, ok := r.customSet().byStorage[res]
	return k, ok
}

// SetHPAScaleToZero turns the HPAScaleToZero feature gate on or off:
// with it, an HPA with an Object or External metric may have minReplicas
// 0 (kube-apiserver's alpha gate, off by default there and here).
func (r *Registry) SetHPAScaleToZero(on bool) { r.hpaScaleToZero.Store(on) }

// Kinds lists every kind in registration order.
func (r *Registry) Kinds() []*Kind {
	return append(append([]*Kind(nil), r.kinds...), r.customSet().kinds...)
}

// GroupVersions lists the served group versions, the core group first and
// the others sorted by group name.
func (r *Registry) GroupVersions() []schema.GroupVersion {
	seen := map[schema.GroupVersion]bool{}
	var out []schema.GroupVersion
	for _, k := range r.Kinds() {
		gv := k.GVK.GroupVersion()
		if !seen[gv] {
			seen[gv] = true
			out = append(out, gv)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if (out[i].Group == "") != (out[j].Group == "") {
			return out[i].Group == ""
		}
		return out[i].Group < out[j].Group
	})
	return out
}

// KindsIn lists the kinds served in gv, sorted by resource.
func (r *Registry) KindsIn(gv schema.GroupVersion) []*Kind {
	var out []*Kind
	for _, k := range r.Kinds() {
		if k.GVK.GroupVersion() == gv {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Resource < out[j].Resource })
	return out
}
