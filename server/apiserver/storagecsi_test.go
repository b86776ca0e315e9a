package apiserver_test

import (
	"testing"
	"time"

	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

// TestVolumeAttachmentAPI: the operations of the conformance tests
// "VolumeAttachment should run through the lifecycle" and "should apply
// changes to a volumeattachment status" (storage/volume_attachment.go),
// over protobuf as the suite's clients speak, plus kube-apiserver's
// status reset on create, spec immutability and 422 field paths.
func TestVolumeAttachmentAPI(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	cs, ct := protoClientset(t, e.srv)
	vas := cs.StorageV1().VolumeAttachments()
	wantDiscovered(t, e, storagev1.SchemeGroupVersion, "volumeattachments", "volumeattachments/status", "csinodes", "csidrivers", "csistoragecapacities")

	pv := "pv-1"
	// The suite sets metadata.uid on create (to the name); the server
	// assigns its own.
	va := &storagev1.VolumeAttachment{ObjectMeta: metav1.ObjectMeta{Name: "va-1", UID: "va-1"},
		Spec: storagev1.VolumeAttachmentSpec{Attacher: "e2e-test.storage.k8s.io", NodeName: "node-0",
			Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: &pv}},
		Status: storagev1.VolumeAttachmentStatus{Attached: true}}
	created, err := vas.Create(e.ctx, va, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if created.UID == "va-1" || created.UID == "" {
		t.Fatalf("uid %q", created.UID)
	}
	if created.Status.Attached {
		t.Fatal("create kept the client's status; kube-apiserver resets it")
	}
	patched, err := vas.Patch(e.ctx, "va-1", types.MergePatchType, []byte(`{"metadata":{"labels":{"va-1":"patched"}}}`), metav1.PatchOptions{})
	if err != nil || patched.Labels["va-1"] != "patched" {
		t.Fatalf("patch: %v", err)
	}
	if l, err := vas.List(e.ctx, metav1.ListOptions{LabelSelector: "va-1=patched"}); err != nil || len(l.Items) != 1 {
		t.Fatalf("list by label: %v %v", err, l)
	}
	dc := dynamicClient(t, e)
	gvr := storagev1.SchemeGroupVersion.WithResource("volumeattachments")
	st, err := dc.Resource(gvr).Get(e.ctx, "va-1", metav1.GetOptions{}, "status")
	if err != nil || st.GetUID() != created.UID {
		t.Fatalf("get /status: %v", err)
	}
	sp, err := vas.Patch(e.ctx, "va-1", types.MergePatchType, []byte(`{"status":{"attached":true},"spec":{"nodeName":"other"}}`), metav1.PatchOptions{}, "status")
	if err != nil || !sp.Status.Attached || sp.Spec.NodeName != "node-0" {
		t.Fatalf("patch /status: %v %+v", err, sp)
	}
	sp.Status.Attached = false
	if su, err := vas.UpdateStatus(e.ctx, sp, metav1.UpdateOptions{}); err != nil || su.Status.Attached {
		t.Fatalf("update /status: %v", err)
	}
	// A main-resource update keeps the status and may not change the spec.
	cur, _ := vas.Get(e.ctx, "va-1", metav1.GetOptions{})
	cur.Labels["va-e2e"] = "updated"
	cur.Status.Attached = true
	if up, err := vas.Update(e.ctx, cur, metav1.UpdateOptions{}); err != nil || up.Labels["va-e2e"] != "updated" || up.Status.Attached {
		t.Fatalf("update: %v %+v", err, up)
	}
	cur, _ = vas.Get(e.ctx, "va-1", metav1.GetOptions{})
	cur.Spec.NodeName = "node-1"
	if _, err := vas.Update(e.ctx, cur, metav1.UpdateOptions{}); !causeFields(t, err)["spec"] {
		t.Fatalf("spec change: %v", err)
	}
	bad := &storagev1.VolumeAttachment{ObjectMeta: metav1.ObjectMeta{Name: "bad"},
		Spec: storagev1.VolumeAttachmentSpec{NodeName: "Not_A_Node"}}
	f := causeFields(t, func() error { _, err := vas.Create(e.ctx, bad, metav1.CreateOptions{}); return err }())
	if !f["spec.attacher"] || !f["spec.source"] || !f["spec.nodeName"] {
		t.Fatalf("invalid attachment causes: %v", f)
	}
	rows := wantColumns(t, e, "/apis/storage.k8s.io/v1/volumeattachments", "Name", "Attacher", "PV", "Node", "Attached", "Age")
	if len(rows) != 1 || rows[0][1] != "e2e-test.storage.k8s.io" || rows[0][2] != "pv-1" || rows[0][4] != false {
		t.Fatalf("rows: %v", rows)
	}
	if err := vas.DeleteCollection(e.ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "va-e2e=updated"}); err != nil {
		t.Fatalf("deletecollection: %v", err)
	}
	if _, err := vas.Get(e.ctx, "va-1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after deletecollection: %v", err)
	}
	ct.check(t)
}

// TestCSINodeAndDriverAPI: the conformance tests "CSINodes should run
// through the lifecycle of a csinode" and "CSIInlineVolumes should run
// through the lifecycle of a CSIDriver" (strategic merge patches, update,
// deletecollection), with kube-apiserver's CSIDriver defaults and
// immutable fields.
func TestCSINodeAndDriverAPI(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	cs, ct := protoClientset(t, e.srv)

	nodes := cs.StorageV1().CSINodes()
	cn, err := nodes.Create(e.ctx, &storagev1.CSINode{ObjectMeta: metav1.ObjectMeta{Name: "e2e-csinode-a"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create csinode: %v", err)
	}
	if p, err := nodes.Patch(e.ctx, cn.Name, types.StrategicMergePatchType, []byte(`{"metadata":{"labels":{"e2e-csinode-a":"patched"}}}`), metav1.PatchOptions{}); err != nil || p.Labels[cn.Name] != "patched" {
		t.Fatalf("patch csinode: %v", err)
	}
	cn, _ = nodes.Get(e.ctx, cn.Name, metav1.GetOptions{})
	cn.Spec.Drivers = []storagev1.CSINodeDriver{{Name: "csi.example.com", NodeID: "n1"}, {Name: "csi.example.com", TopologyKeys: []string{"bad key"}}}
	_, err = nodes.Update(e.ctx, cn, metav1.UpdateOptions{})
	if f := causeFields(t, err); !f["spec.drivers[1].name"] || !f["spec.drivers[1].nodeID"] || !f["spec.drivers[1]"] {
		t.Fatalf("csinode causes: %v", f)
	}
	cn.Spec.Drivers = cn.Spec.Drivers[:1]
	if cn, err = nodes.Update(e.ctx, cn, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update csinode: %v", err)
	}
	cn.Spec.Drivers[0].NodeID = "n2"
	if _, err := nodes.Update(e.ctx, cn, metav1.UpdateOptions{}); !causeFields(t, err)["spec.drivers"] {
		t.Fatalf("driver nodeID change: %v", err)
	}
	rows := wantColumns(t, e, "/apis/storage.k8s.io/v1/csinodes", "Name", "Drivers", "Age")
	if len(rows) != 1 || rows[0][1] != float64(1) {
		t.Fatalf("csinode rows: %v", rows)
	}
	if err := nodes.DeleteCollection(e.ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "e2e-csinode-a=patched"}); err != nil {
		t.Fatal(err)
	}
	if l, _ := nodes.List(e.ctx, metav1.ListOptions{}); len(l.Items) != 0 {
		t.Fatalf("csinodes left: %v", l.Items)
	}

	drivers := cs.StorageV1().CSIDrivers()
	d, err := drivers.Create(e.ctx, &storagev1.CSIDriver{ObjectMeta: metav1.ObjectMeta{Name: "inline-driver-1", Labels: map[string]string{"e2e": "x"}},
		Spec: storagev1.CSIDriverSpec{VolumeLifecycleModes: []storagev1.VolumeLifecycleMode{storagev1.VolumeLifecycleEphemeral}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create csidriver: %v", err)
	}
	s := d.Spec
	if s.AttachRequired == nil || !*s.AttachRequired || s.PodInfoOnMount == nil || *s.PodInfoOnMount || s.StorageCapacity == nil ||
		s.FSGroupPolicy == nil || *s.FSGroupPolicy != storagev1.ReadWriteOnceWithFSTypeFSGroupPolicy || s.RequiresRepublish == nil || s.SELinuxMount == nil {
		t.Fatalf("csidriver defaults: %+v", s)
	}
	if _, err := drivers.Create(e.ctx, d, metav1.CreateOptions{}); !apierrors.IsAlreadyExists(err) {
		t.Fatalf("second create: %v", err)
	}
	if p, err := drivers.Patch(e.ctx, d.Name, types.StrategicMergePatchType, []byte(`{"metadata":{"labels":{"inline-driver-1":"patched"}}}`), metav1.PatchOptions{}); err != nil || p.Labels[d.Name] != "patched" {
		t.Fatalf("patch csidriver: %v", err)
	}
	d, _ = drivers.Get(e.ctx, d.Name, metav1.GetOptions{})
	no := false
	d.Spec.AttachRequired = &no
	d.Spec.VolumeLifecycleModes = []storagev1.VolumeLifecycleMode{"Sometimes"}
	_, err = drivers.Update(e.ctx, d, metav1.UpdateOptions{})
	if f := causeFields(t, err); !f["spec.attachedRequired"] || !f["spec.volumeLifecycleModes"] {
		t.Fatalf("csidriver update causes: %v", f)
	}
	rows = wantColumns(t, e, "/apis/storage.k8s.io/v1/csidrivers", "Name", "AttachRequired", "PodInfoOnMount", "StorageCapacity", "TokenRequests", "RequiresRepublish", "Modes", "Age")
	if len(rows) != 1 || rows[0][1] != true || rows[0][4] != "<unset>" || rows[0][6] != "Ephemeral" {
		t.Fatalf("csidriver rows: %v", rows)
	}
	if err := drivers.DeleteCollection(e.ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "inline-driver-1=patched"}); err != nil {
		t.Fatal(err)
	}
	if _, err := drivers.Get(e.ctx, d.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after deletecollection: %v", err)
	}
	ct.check(t)
}

// TestCSIStorageCapacityAPI: the conformance test "CSIStorageCapacity
// should support CSIStorageCapacities API operations": namespaced CRUD,
// watches in a namespace and across namespaces, deletecollection.
func TestCSIStorageCapacityAPI(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	e.createNamespace("ns1")
	cs, _ := protoClientset(t, e.srv)
	caps := cs.StorageV1().CSIStorageCapacities("ns1")
	mk := func(name string) *storagev1.CSIStorageCapacity {
		q := resource.MustParse("1Gi")
		return &storagev1.CSIStorageCapacity{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"test": "x"}},
			StorageClassName: "e2e.example.com", Capacity: &q}
	}
	if _, err := caps.Create(e.ctx, mk("csc1"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create: %v", err)
	}
	w, err := cs.StorageV1().CSIStorageCapacities("").Watch(e.ctx, metav1.ListOptions{LabelSelector: "test=x"})
	if err != nil {
		t.Fatalf("watch across namespaces: %v", err)
	}
	defer w.Stop()
	if _, err := caps.Create(e.ctx, mk("csc2"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w.ResultChan():
		if c, ok := ev.Object.(*storagev1.CSIStorageCapacity); ev.Type != watch.Added || !ok || c.Name == "" {
			t.Fatalf("watch event: %v %T", ev.Type, ev.Object)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event")
	}
	if l, err := cs.StorageV1().CSIStorageCapacities("").List(e.ctx, metav1.ListOptions{LabelSelector: "test=x"}); err != nil || len(l.Items) != 2 {
		t.Fatalf("list across namespaces: %v", err)
	}
	p, err := caps.Patch(e.ctx, "csc1", types.MergePatchType, []byte(`{"metadata":{"annotations":{"patched":"true"}}}`), metav1.PatchOptions{})
	if err != nil || p.Annotations["patched"] != "true" {
		t.Fatalf("patch: %v", err)
	}
	p.StorageClassName = "other"
	neg := resource.MustParse("-1")
	p.Capacity = &neg
	_, err = caps.Update(e.ctx, p, metav1.UpdateOptions{})
	if f := causeFields(t, err); !f["storageClassName"] || !f["capacity"] {
		t.Fatalf("update causes: %v", f)
	}
	rows := wantColumns(t, e, "/apis/storage.k8s.io/v1/namespaces/ns1/csistoragecapacities", "Name", "StorageClassName", "Capacity")
	if len(rows) != 2 || rows[0][2] != "1Gi" {
		t.Fatalf("rows: %v", rows)
	}
	if err := caps.DeleteCollection(e.ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "test=x"}); err != nil {
		t.Fatal(err)
	}
	if l, _ := caps.List(e.ctx, metav1.ListOptions{}); len(l.Items) != 0 {
		t.Fatalf("left: %v", l.Items)
	}
}
