// Package volume is the PersistentVolume controller: it binds claims to
// volumes (class, size, access modes, volume mode, selector and, for
// WaitForFirstConsumer classes, the node the scheduler selected),
// provisions local-path volumes (the built-in skiff.io/local-path
// provisioner: a hostPath volume pinned to one node, whose directory the
// node's agent makes and removes, agent/localpath), reclaims released
// volumes (Retain keeps them; Delete of a local-path volume is left to its
// agent), expands bound local-path claims, assigns the default class to
// claims that name none, and keeps the pvc-protection and pv-protection
// finalizers. It runs on the Raft leader.
package volume

import (
	"context"
	"fmt"
	"log/slog"
	"path"
	"slices"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-io/skiff/server/controller"
)

const component = "persistentvolume-controller"

// Controller reconciles claims and volumes.
type Controller struct {
	cc       *controller.Context
	claims   corelisters.PersistentVolumeClaimLister
	volumes  corelisters.PersistentVolumeLister
	classes  storagelisters.StorageClassLister
	nodes    corelisters.NodeLister
	pods     corelisters.PodLister
	infs     []cache.SharedIndexInformer
	claimQ   controller.Queue
	volumeQ  controller.Queue
	recorder record.EventRecorder
	log      *slog.Logger
}

// New returns the controller.
func New(cc *controller.Context) *Controller {
	f := cc.Informers
	c := &Controller{
		cc:     cc,
		claims: f.Core().V1().PersistentVolumeClaims().Lister(), volumes: f.Core().V1().PersistentVolumes().Lister(),
		classes: f.Storage().V1().StorageClasses().Lister(), nodes: f.Core().V1().Nodes().Lister(),
		pods:     f.Core().V1().Pods().Lister(),
		claimQ:   controller.NewQueue(component+"-claims", 0),
		volumeQ:  controller.NewQueue(component+"-volumes", 0),
		recorder: cc.Recorder(component),
		log:      cc.Log(component),
	}
	claimInf := f.Core().V1().PersistentVolumeClaims().Informer()
	volumeInf := f.Core().V1().PersistentVolumes().Informer()
	classInf := f.Storage().V1().StorageClasses().Informer()
	podInf := f.Core().V1().Pods().Informer()
	nodeInf := f.Core().V1().Nodes().Informer()
	c.infs = []cache.SharedIndexInformer{claimInf, volumeInf, classInf, podInf, nodeInf}
	controller.AddHandler(claimInf, controller.Handler(c.claimQ), c.log)
	controller.AddHandler(volumeInf, controller.Handler(c.volumeQ), c.log)
	onVolume := func(obj any) {
		if pv, ok := controller.Unwrap[*corev1.PersistentVolume](obj); ok && pv.Spec.ClaimRef != nil {
			c.claimQ.Add(pv.Spec.ClaimRef.Namespace + "/" + pv.Spec.ClaimRef.Name)
		}
	}
	controller.AddHandler(volumeInf, cache.ResourceEventHandlerFuncs{AddFunc: onVolume,
		UpdateFunc: func(_, obj any) { onVolume(obj) }, DeleteFunc: onVolume}, c.log)
	// A claim waits for its class, or for volumes to appear.
	requeuePending := func(any) {
		claims, _ := c.claims.List(labels.Everything())
		for _, pvc := range claims {
			if pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.StorageClassName == nil {
				c.claimQ.Add(pvc.Namespace + "/" + pvc.Name)
			}
		}
	}
	controller.AddHandler(classInf, cache.ResourceEventHandlerFuncs{AddFunc: requeuePending,
		UpdateFunc: func(_, obj any) { requeuePending(obj) }}, c.log)
	onClaimVolume := func(obj any) {
		p, ok := controller.Unwrap[*corev1.PersistentVolumeClaim](obj)
		if ok && p.Spec.VolumeName != "" {
			c.volumeQ.Add(p.Spec.VolumeName)
		}
	}
	controller.AddHandler(claimInf, cache.ResourceEventHandlerFuncs{AddFunc: onClaimVolume,
		UpdateFunc: func(_, obj any) { onClaimVolume(obj) }, DeleteFunc: onClaimVolume}, c.log)
	// A claim being deleted waits for its pods to finish (pvc-protection).
	onPod := func(obj any) {
		p, ok := controller.Unwrap[*corev1.Pod](obj)
		if !ok {
			return
		}
		for _, v := range p.Spec.Volumes {
			if v.PersistentVolumeClaim != nil {
				c.claimQ.Add(p.Namespace + "/" + v.PersistentVolumeClaim.ClaimName)
			}
		}
	}
	controller.AddHandler(podInf, cache.ResourceEventHandlerFuncs{AddFunc: onPod, DeleteFunc: onPod,
		UpdateFunc: func(_, obj any) { onPod(obj) }}, c.log)
	return c
}

// Run runs workers until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	if !controller.WaitForSync(ctx, c.infs...) {
		return
	}
	go controller.RunWorkers(ctx, c.volumeQ, workers, c.log, c.syncVolume)
	controller.RunWorkers(ctx, c.claimQ, workers, c.log, c.syncClaim)
}

func (c *Controller) syncClaim(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return err
	}
	pvc, err := c.claims.PersistentVolumeClaims(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if pvc.DeletionTimestamp != nil {
		return c.releaseClaimFinalizer(ctx, pvc)
	}
	if !slices.Contains(pvc.Finalizers, PVCProtection) {
		p := pvc.DeepCopy()
		p.Finalizers = append(p.Finalizers, PVCProtection)
		_, err := c.cc.Client.CoreV1().PersistentVolumeClaims(ns).Update(ctx, p, metav1.UpdateOptions{})
		return ignoreGone(err)
	}
	if pvc.Spec.StorageClassName == nil && pvc.Spec.VolumeName == "" && pvc.Annotations[corev1.BetaStorageClassAnnotation] == "" {
		classes, err := c.classes.List(labels.Everything())
		if err != nil {
			return err
		}
		if def := DefaultClass(classes); def != nil {
			p := pvc.DeepCopy()
			p.Spec.StorageClassName = &def.Name
			_, err := c.cc.Client.CoreV1().PersistentVolumeClaims(ns).Update(ctx, p, metav1.UpdateOptions{})
			return ignoreGone(err)
		}
	}
	if pvc.Spec.VolumeName != "" {
		return c.syncBoundClaim(ctx, pvc)
	}
	return c.bindClaim(ctx, pvc)
}

// releaseClaimFinalizer drops pvc-protection once no running pod uses the
// claim.
func (c *Controller) releaseClaimFinalizer(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	if !slices.Contains(pvc.Finalizers, PVCProtection) {
		return nil
	}
	pods, err := c.pods.Pods(pvc.Namespace).List(labels.Everything())
	if err != nil {
		return err
	}
	if ClaimInUse(pods, pvc) {
		return nil // a pod update or delete requeues the claim
	}
	p := pvc.DeepCopy()
	p.Finalizers = slices.DeleteFunc(p.Finalizers, func(f string) bool { return f == PVCProtection })
	_, err = c.cc.Client.CoreV1().PersistentVolumeClaims(pvc.Namespace).Update(ctx, p, metav1.UpdateOptions{})
	return ignoreGone(err)
}

// bindClaim finds or provisions a volume for an unbound claim.
func (c *Controller) bindClaim(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	className := ClaimClass(pvc)
	var class *storagev1.StorageClass
	if className != "" {
		sc, err := c.classes.Get(className)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return err
		default:
			class = sc
		}
	}
	var node *corev1.Node
	if WaitForFirstConsumer(class) {
		sel := pvc.Annotations[AnnSelectedNode]
		if sel == "" {
			// A pod bound to a node without the scheduler (spec.nodeName
			// set by its author) is the first consumer too.
			sel = c.nodeOfConsumer(pvc)
		}
		if sel == "" {
			c.event(pvc, corev1.EventTypeNormal, "WaitForFirstConsumer", "waiting for first consumer to be created before binding")
			return c.claimPhase(ctx, pvc, corev1.ClaimPending)
		}
		n, err := c.nodes.Get(sel)
		if err != nil {
			c.event(pvc, corev1.EventTypeWarning, "ProvisioningFailed", fmt.Sprintf("selected node %q: %v", sel, err))
			return c.claimPhase(ctx, pvc, corev1.ClaimPending)
		}
		node = n
	}
	pvs, err := c.volumes.List(labels.Everything())
	if err != nil {
		return err
	}
	if pv := FindVolume(pvs, pvc, node); pv != nil {
		return c.bind(ctx, pv, pvc)
	}
	switch {
	case className == "":
		c.event(pvc, corev1.EventTypeNormal, "FailedBinding", "no persistent volumes available for this claim and no storage class is set")
	case class == nil:
		c.event(pvc, corev1.EventTypeWarning, "ProvisioningFailed", fmt.Sprintf("storageclass.storage.k8s.io %q not found", className))
	case class.Provisioner == LocalPathProvisioner:
		if err := c.provision(ctx, pvc, class, node); err != nil {
			c.event(pvc, corev1.EventTypeWarning, "ProvisioningFailed", err.Error())
		} else {
			return nil
		}
	default:
		c.event(pvc, corev1.EventTypeNormal, "ExternalProvisioning",
			fmt.Sprintf("Waiting for a volume to be created either by the external provisioner '%s' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.", class.Provisioner))
	}
	return c.claimPhase(ctx, pvc, corev1.ClaimPending)
}

// bind makes the two-way binding: the volume's claimRef first (the
// claim's volumeName follows; a crash between them is finished by the next
// sync, which finds the volume pre-bound to the claim).
func (c *Controller) bind(ctx context.Context, pv *corev1.PersistentVolume, pvc *corev1.PersistentVolumeClaim) error {
	ref := pv.Spec.ClaimRef
	if ref == nil || ref.UID != pvc.UID {
		p := pv.DeepCopy()
		p.Spec.ClaimRef = &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: pvc.Namespace,
			Name: pvc.Name, UID: pvc.UID, ResourceVersion: pvc.ResourceVersion}
		if ref == nil {
			setAnn(&p.ObjectMeta, AnnBoundByCtrl, "yes")
		}
		var err error
		if pv, err = c.cc.Client.CoreV1().PersistentVolumes().Update(ctx, p, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	p := pvc.DeepCopy()
	p.Spec.VolumeName = pv.Name
	setAnn(&p.ObjectMeta, AnnBindCompleted, "yes")
	if ref == nil {
		setAnn(&p.ObjectMeta, AnnBoundByCtrl, "yes")
	}
	updated, err := c.cc.Client.CoreV1().PersistentVolumeClaims(pvc.Namespace).Update(ctx, p, metav1.UpdateOptions{})
	if err != nil {
		return err
	}
	return c.syncBoundClaim(ctx, updated)
}

// syncBoundClaim finishes the binding (statuses), notices a lost volume
// and expands the volume when the claim asks for more.
func (c *Controller) syncBoundClaim(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	pv, err := c.cc.Client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if pvc.Status.Phase == corev1.ClaimBound {
			c.event(pvc, corev1.EventTypeWarning, "ClaimLost", "Bound claim has lost its PersistentVolume. Data on the volume is lost!")
			return c.claimPhase(ctx, pvc, corev1.ClaimLost)
		}
		c.event(pvc, corev1.EventTypeNormal, "FailedBinding", fmt.Sprintf("volume %q not found", pvc.Spec.VolumeName))
		return c.claimPhase(ctx, pvc, corev1.ClaimPending)
	}
	if err != nil {
		return err
	}
	if ref := pv.Spec.ClaimRef; ref == nil || ref.UID == "" {
		if ref != nil && (ref.Namespace != pvc.Namespace || ref.Name != pvc.Name) {
			c.event(pvc, corev1.EventTypeWarning, "FailedBinding", fmt.Sprintf("volume %q already bound to a different claim.", pv.Name))
			return c.claimPhase(ctx, pvc, corev1.ClaimPending)
		}
		return c.bind(ctx, pv, pvc) // pre-bound claim: bind the volume to it
	} else if ref.UID != pvc.UID {
		c.event(pvc, corev1.EventTypeWarning, "FailedBinding", fmt.Sprintf("volume %q already bound to a different claim.", pv.Name))
		return c.claimPhase(ctx, pvc, corev1.ClaimLost)
	}
	if pv.Status.Phase != corev1.VolumeBound {
		p := pv.DeepCopy()
		p.Status.Phase, p.Status.Message, p.Status.Reason = corev1.VolumeBound, "", ""
		if pv, err = c.cc.Client.CoreV1().PersistentVolumes().UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	if pv, err = c.expand(ctx, pvc, pv); err != nil {
		return err
	}
	capacity := pv.Spec.Capacity[corev1.ResourceStorage]
	have, ok := pvc.Status.Capacity[corev1.ResourceStorage]
	if pvc.Status.Phase == corev1.ClaimBound && ok && have.Cmp(capacity) == 0 && slices.Equal(pvc.Status.AccessModes, pv.Spec.AccessModes) {
		return nil
	}
	p := pvc.DeepCopy()
	p.Status.Phase = corev1.ClaimBound
	p.Status.AccessModes = pv.Spec.AccessModes
	p.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: capacity}
	p.Status.Conditions = slices.DeleteFunc(p.Status.Conditions, func(cd corev1.PersistentVolumeClaimCondition) bool {
		return cd.Type == corev1.PersistentVolumeClaimResizing
	})
	_, err = c.cc.Client.CoreV1().PersistentVolumeClaims(pvc.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	return ignoreGone(err)
}

// expand grows a bound local-path volume to what its claim asks for when
// the class allows expansion (a directory has no size of its own, so only
// the recorded capacity changes).
func (c *Controller) expand(ctx context.Context, pvc *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume) (*corev1.PersistentVolume, error) {
	want := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	have := pv.Spec.Capacity[corev1.ResourceStorage]
	if want.Cmp(have) <= 0 {
		return pv, nil
	}
	sc, err := c.classes.Get(ClaimClass(pvc))
	if err != nil || sc.AllowVolumeExpansion == nil || !*sc.AllowVolumeExpansion {
		c.event(pvc, corev1.EventTypeWarning, "ExternalExpanding", "the claim's storage class does not allow volume expansion")
		return pv, nil
	}
	if pv.Annotations[AnnProvisionedBy] != LocalPathProvisioner {
		c.event(pvc, corev1.EventTypeWarning, "VolumeResizeFailed", fmt.Sprintf("volume %q was not provisioned by %s: no built-in resizer", pv.Name, LocalPathProvisioner))
		return pv, nil
	}
	p := pv.DeepCopy()
	p.Spec.Capacity[corev1.ResourceStorage] = want
	out, err := c.cc.Client.CoreV1().PersistentVolumes().Update(ctx, p, metav1.UpdateOptions{})
	if err != nil {
		return nil, err
	}
	c.event(pvc, corev1.EventTypeNormal, "VolumeResizeSuccessful", fmt.Sprintf("resize volume %q to %s: local-path directories have no quota", pv.Name, want.String()))
	return out, nil
}

// provision makes a local-path volume for pvc on node (nil: an Immediate
// class; the first ready node by name is chosen).
func (c *Controller) provision(ctx context.Context, pvc *corev1.PersistentVolumeClaim, class *storagev1.StorageClass, node *corev1.Node) error {
	if node == nil {
		nodes, err := c.nodes.List(labels.Everything())
		if err != nil {
			return err
		}
		node = firstReady(nodes)
		if node == nil {
			return fmt.Errorf("no ready node to provision a %s volume on", LocalPathProvisioner)
		}
	}
	pv, err := LocalPathVolume(pvc, class, node)
	if err != nil {
		return err
	}
	_, err = c.cc.Client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create volume %s: %w", pv.Name, err)
	}
	c.event(pvc, corev1.EventTypeNormal, "ProvisioningSucceeded", fmt.Sprintf("Successfully provisioned volume %s on node %s", pv.Name, node.Name))
	return nil
}

// LocalPathVolume is the volume the local-path provisioner makes for pvc
// on node: a hostPath (DirectoryOrCreate) at <dir>/<pv name>, where dir
// is the class's nodePath parameter or the node's published directory,
// with a node affinity to that node, pre-bound to the claim.
func LocalPathVolume(pvc *corev1.PersistentVolumeClaim, class *storagev1.StorageClass, node *corev1.Node) (*corev1.PersistentVolume, error) {
	dir := class.Parameters[ParamNodePath]
	if dir == "" {
		dir = node.Annotations[AnnLocalPathDir]
	}
	if dir == "" {
		return nil, fmt.Errorf("node %s publishes no local-path directory (annotation %s) and class %s sets no %s parameter", node.Name, AnnLocalPathDir, class.Name, ParamNodePath)
	}
	if !path.IsAbs(dir) {
		return nil, fmt.Errorf("class %s: parameter %s %q is not an absolute path", class.Name, ParamNodePath, dir)
	}
	name := "pvc-" + string(pvc.UID)
	policy := corev1.PersistentVolumeReclaimDelete
	if class.ReclaimPolicy != nil {
		policy = *class.ReclaimPolicy
	}
	hostname := node.Labels[corev1.LabelHostname]
	term := corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node.Name}}}}
	if hostname != "" {
		term = corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{hostname}}}}
	}
	t := corev1.HostPathDirectoryOrCreate
	mode := corev1.PersistentVolumeFilesystem
	if pvc.Spec.VolumeMode != nil {
		mode = *pvc.Spec.VolumeMode
	}
	if mode != corev1.PersistentVolumeFilesystem {
		return nil, fmt.Errorf("%s provides only Filesystem volumes, not %s", LocalPathProvisioner, mode)
	}
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{AnnProvisionedBy: LocalPathProvisioner, AnnSelectedNode: node.Name}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: pvc.Spec.Resources.Requests[corev1.ResourceStorage]},
			AccessModes:                   pvc.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: policy,
			StorageClassName:              class.Name,
			VolumeMode:                    &mode,
			MountOptions:                  class.MountOptions,
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{
				Path: path.Join(dir, name), Type: &t}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{term}}},
			ClaimRef: &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: pvc.Namespace,
				Name: pvc.Name, UID: pvc.UID},
		},
	}, nil
}

// nodeOfConsumer returns the node of a pod already bound to one that uses
// the claim, or "".
func (c *Controller) nodeOfConsumer(pvc *corev1.PersistentVolumeClaim) string {
	pods, err := c.pods.Pods(pvc.Namespace).List(labels.Everything())
	if err != nil {
		return ""
	}
	for _, p := range pods {
		if p.Spec.NodeName != "" && ClaimInUse([]*corev1.Pod{p}, pvc) {
			return p.Spec.NodeName
		}
	}
	return ""
}

func firstReady(nodes []*corev1.Node) *corev1.Node {
	var best *corev1.Node
	for _, n := range nodes {
		if n.Spec.Unschedulable || n.DeletionTimestamp != nil {
			continue
		}
		for _, cd := range n.Status.Conditions {
			if cd.Type == corev1.NodeReady && cd.Status == corev1.ConditionTrue && (best == nil || n.Name < best.Name) {
				best = n
			}
		}
	}
	return best
}

func (c *Controller) claimPhase(ctx context.Context, pvc *corev1.PersistentVolumeClaim, phase corev1.PersistentVolumeClaimPhase) error {
	if pvc.Status.Phase == phase {
		return nil
	}
	p := pvc.DeepCopy()
	p.Status.Phase = phase
	_, err := c.cc.Client.CoreV1().PersistentVolumeClaims(pvc.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	return ignoreGone(err)
}

func (c *Controller) event(obj metav1.Object, typ, reason, msg string) {
	switch o := obj.(type) {
	case *corev1.PersistentVolumeClaim:
		c.recorder.Event(o, typ, reason, msg)
	case *corev1.PersistentVolume:
		c.recorder.Event(o, typ, reason, msg)
	}
}

func setAnn(m *metav1.ObjectMeta, k, v string) {
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Annotations[k] = v
}

func ignoreGone(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
