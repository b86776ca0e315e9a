package apiserver_test

import (
	"net/http"
	"testing"
	"time"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

// TestFlowSchemaAPI: the operations of the conformance test "API priority
// and fairness should support FlowSchema API operations"
// (apimachinery/flowcontrol.go) over protobuf: discovery of flowschemas
// and flowschemas/status, three creates from one generateName template,
// a watch from the list's resourceVersion that sees the patch, spec
// patch and update (generation bumped), /status get, patch and update,
// delete and deletecollection; kube-apiserver's defaults and 422s.
func TestFlowSchemaAPI(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	cs, ct := protoClientset(t, e.srv)
	wantDiscovered(t, e, flowcontrolv1.SchemeGroupVersion, "flowschemas", "flowschemas/status",
		"prioritylevelconfigurations", "prioritylevelconfigurations/status")
	client := cs.FlowcontrolV1().FlowSchemas()
	template := &flowcontrolv1.FlowSchema{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-example-fs-", Labels: map[string]string{"fs": "x"}},
		Spec: flowcontrolv1.FlowSchemaSpec{
			MatchingPrecedence:         10000,
			PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: "global-default"},
			DistinguisherMethod:        &flowcontrolv1.FlowDistinguisherMethod{Type: flowcontrolv1.FlowDistinguisherMethodByUserType},
			Rules: []flowcontrolv1.PolicyRulesWithSubjects{{
				Subjects:         []flowcontrolv1.Subject{{Kind: flowcontrolv1.SubjectKindUser, User: &flowcontrolv1.UserSubject{Name: "example-e2e-non-existent-user"}}},
				NonResourceRules: []flowcontrolv1.NonResourcePolicyRule{{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}}},
			}},
		},
	}
	var created *flowcontrolv1.FlowSchema
	for i := 0; i < 3; i++ {
		var err error
		if created, err = client.Create(e.ctx, template, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	if created.Generation != 1 {
		t.Fatalf("generation %d", created.Generation)
	}
	list, err := client.List(e.ctx, metav1.ListOptions{LabelSelector: "fs=x"})
	if err != nil || len(list.Items) != 3 {
		t.Fatalf("list: %v", err)
	}
	w, err := client.Watch(e.ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion, LabelSelector: "fs=x"})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer w.Stop()
	p, err := client.Patch(e.ctx, created.Name, types.MergePatchType, []byte(`{"metadata":{"annotations":{"patched":"true"}},"spec":{"matchingPrecedence":9999}}`), metav1.PatchOptions{})
	if err != nil || p.Annotations["patched"] != "true" || p.Spec.MatchingPrecedence != 9999 || p.Generation != 2 {
		t.Fatalf("patch: %v %+v", err, p)
	}
	p.Annotations["updated"] = "true"
	p.Spec.MatchingPrecedence = 9000
	if u, err := client.Update(e.ctx, p, metav1.UpdateOptions{}); err != nil || u.Spec.MatchingPrecedence != 9000 {
		t.Fatalf("update: %v", err)
	}
	select {
	case ev := <-w.ResultChan():
		if fs, ok := ev.Object.(*flowcontrolv1.FlowSchema); ev.Type != watch.Modified || !ok || fs.Annotations["patched"] != "true" {
			t.Fatalf("watch event %v %T", ev.Type, ev.Object)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event")
	}
	st, err := dynamicClient(t, e).Resource(flowcontrolv1.SchemeGroupVersion.WithResource("flowschemas")).Get(e.ctx, created.Name, metav1.GetOptions{}, "status")
	if err != nil || st.GetUID() != created.UID || st.GetKind() != "FlowSchema" {
		t.Fatalf("get /status: %v", err)
	}
	sp, err := client.Patch(e.ctx, created.Name, types.MergePatchType, []byte(`{"status":{"conditions":[{"type":"PatchStatusFailed","status":"False","reason":"e2e"}]}}`), metav1.PatchOptions{}, "status")
	if err != nil || len(sp.Status.Conditions) != 1 {
		t.Fatalf("patch /status: %v", err)
	}
	sp.Status.Conditions = append(sp.Status.Conditions, flowcontrolv1.FlowSchemaCondition{Type: "StatusUpdateFailed", Status: "False", Reason: "E2E"})
	if su, err := client.UpdateStatus(e.ctx, sp, metav1.UpdateOptions{}); err != nil || len(su.Status.Conditions) != 2 {
		t.Fatalf("update /status: %v", err)
	}
	sp, _ = client.Get(e.ctx, created.Name, metav1.GetOptions{})
	sp.Status.Conditions = append(sp.Status.Conditions, flowcontrolv1.FlowSchemaCondition{Type: "StatusUpdateFailed"})
	if _, err := client.UpdateStatus(e.ctx, sp, metav1.UpdateOptions{}); !causeFields(t, err)["status.conditions[2].type"] {
		t.Fatalf("duplicate condition: %v", err)
	}
	rows := wantColumns(t, e, "/apis/flowcontrol.apiserver.k8s.io/v1/flowschemas/"+created.Name, "Name", "PriorityLevel", "MatchingPrecedence", "DistinguisherMethod", "Age", "MissingPL")
	if len(rows) != 1 || rows[0][1] != "global-default" || rows[0][2] != float64(9000) || rows[0][3] != "ByUser" || rows[0][5] != "?" {
		t.Fatalf("rows: %v", rows)
	}
	if err := client.Delete(e.ctx, created.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Get(e.ctx, created.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("get deleted: %v", err)
	}
	if err := client.DeleteCollection(e.ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "fs=x"}); err != nil {
		t.Fatal(err)
	}
	if l, _ := client.List(e.ctx, metav1.ListOptions{LabelSelector: "fs=x"}); len(l.Items) != 0 {
		t.Fatalf("left: %d", len(l.Items))
	}
	bad := template.DeepCopy()
	bad.Spec.MatchingPrecedence = 0 // defaulted to 1000
	bad.Spec.Rules[0].Subjects[0] = flowcontrolv1.Subject{Kind: flowcontrolv1.SubjectKindServiceAccount, User: &flowcontrolv1.UserSubject{Name: "u"}}
	bad.Spec.Rules[0].NonResourceRules[0].NonResourceURLs = []string{"/a/*/b"}
	_, err = client.Create(e.ctx, bad, metav1.CreateOptions{})
	f := causeFields(t, err)
	if !f["spec.rules[0].subjects[0].serviceAccount"] || !f["spec.rules[0].subjects[0].user"] || !f["spec.rules[0].nonResourceRules[0].nonResourceURLs[0]"] {
		t.Fatalf("causes: %v", f)
	}
	ct.check(t)
}

// TestPriorityLevelConfigurationAPI: the conformance test "should support
// PriorityLevelConfiguration API operations": creates, spec patch and
// update of nominalConcurrencyShares, /status, deletes; defaults and 422s
// as kube-apiserver.
func TestPriorityLevelConfigurationAPI(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	cs, ct := protoClientset(t, e.srv)
	client := cs.FlowcontrolV1().PriorityLevelConfigurations()
	template := &flowcontrolv1.PriorityLevelConfiguration{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-example-pl-", Labels: map[string]string{"pl": "x"}},
		Spec: flowcontrolv1.PriorityLevelConfigurationSpec{Type: flowcontrolv1.PriorityLevelEnablementLimited,
			Limited: &flowcontrolv1.LimitedPriorityLevelConfiguration{NominalConcurrencyShares: ptr.To(int32(2)),
				LimitResponse: flowcontrolv1.LimitResponse{Type: flowcontrolv1.LimitResponseTypeReject}}},
	}
	var created *flowcontrolv1.PriorityLevelConfiguration
	for i := 0; i < 3; i++ {
		var err error
		if created, err = client.Create(e.ctx, template, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	if created.Spec.Limited.LendablePercent == nil || *created.Spec.Limited.LendablePercent != 0 {
		t.Fatalf("defaults: %+v", created.Spec.Limited)
	}
	p, err := client.Patch(e.ctx, created.Name, types.MergePatchType, []byte(`{"metadata":{"annotations":{"patched":"true"}},"spec":{"limited":{"nominalConcurrencyShares":4}}}`), metav1.PatchOptions{})
	if err != nil || *p.Spec.Limited.NominalConcurrencyShares != 4 || p.Annotations["patched"] != "true" {
		t.Fatalf("patch: %v", err)
	}
	p.Spec.Limited.NominalConcurrencyShares = ptr.To(int32(6))
	if u, err := client.Update(e.ctx, p, metav1.UpdateOptions{}); err != nil || *u.Spec.Limited.NominalConcurrencyShares != 6 {
		t.Fatalf("update: %v", err)
	}
	if st, err := dynamicClient(t, e).Resource(flowcontrolv1.SchemeGroupVersion.WithResource("prioritylevelconfigurations")).Get(e.ctx, created.Name, metav1.GetOptions{}, "status"); err != nil || st.GetUID() != created.UID {
		t.Fatalf("get /status: %v", err)
	}
	sp, err := client.Patch(e.ctx, created.Name, types.MergePatchType, []byte(`{"status":{"conditions":[{"type":"PatchStatusFailed","status":"False","reason":"e2e"}]}}`), metav1.PatchOptions{}, "status")
	if err != nil || len(sp.Status.Conditions) != 1 {
		t.Fatalf("patch /status: %v", err)
	}
	sp.Status.Conditions = append(sp.Status.Conditions, flowcontrolv1.PriorityLevelConfigurationCondition{Type: "StatusUpdateFailed", Status: "False"})
	if su, err := client.UpdateStatus(e.ctx, sp, metav1.UpdateOptions{}); err != nil || len(su.Status.Conditions) != 2 {
		t.Fatalf("update /status: %v", err)
	}
	q := template.DeepCopy()
	q.Spec.Limited.LimitResponse = flowcontrolv1.LimitResponse{Type: flowcontrolv1.LimitResponseTypeQueue, Queuing: &flowcontrolv1.QueuingConfiguration{}}
	qc, err := client.Create(e.ctx, q, metav1.CreateOptions{})
	if err != nil || qc.Spec.Limited.LimitResponse.Queuing.Queues != 64 || qc.Spec.Limited.LimitResponse.Queuing.HandSize != 8 || qc.Spec.Limited.LimitResponse.Queuing.QueueLengthLimit != 50 {
		t.Fatalf("queuing defaults: %v %+v", err, qc)
	}
	rows := wantColumns(t, e, "/apis/flowcontrol.apiserver.k8s.io/v1/prioritylevelconfigurations/"+qc.Name, "Name", "Type", "NominalConcurrencyShares", "Queues", "HandSize", "QueueLengthLimit", "Age")
	if len(rows) != 1 || rows[0][1] != "Limited" || rows[0][2] != float64(2) || rows[0][3] != float64(64) {
		t.Fatalf("rows: %v", rows)
	}
	bad := template.DeepCopy()
	bad.Spec.Limited.NominalConcurrencyShares = ptr.To(int32(-1))
	bad.Spec.Limited.LimitResponse = flowcontrolv1.LimitResponse{Type: flowcontrolv1.LimitResponseTypeQueue, Queuing: &flowcontrolv1.QueuingConfiguration{Queues: 4, HandSize: 10}}
	_, err = client.Create(e.ctx, bad, metav1.CreateOptions{})
	if f := causeFields(t, err); !f["spec.limited.nominalConcurrencyShares"] || !f["spec.limited.limitResponse.queuing.handSize"] {
		t.Fatalf("causes: %v", f)
	}
	if err := client.Delete(e.ctx, created.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.DeleteCollection(e.ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "pl=x"}); err != nil {
		t.Fatal(err)
	}
	if l, _ := client.List(e.ctx, metav1.ListOptions{LabelSelector: "pl=x"}); len(l.Items) != 0 {
		t.Fatalf("left: %d", len(l.Items))
	}
	ct.check(t)
}

// TestFlowClassificationHeaders: the API server classifies each request by
// the FlowSchemas, after impersonation, and names the matched schema and
// priority level in X-Kubernetes-PF-FlowSchema-UID and
// X-Kubernetes-PF-PriorityLevel-UID, as the (non-conformance) test "should
// ensure that requests can be classified by adding FlowSchema and
// PriorityLevelConfiguration" checks: the lowest matchingPrecedence wins,
// a schema whose priority level is missing is skipped.
func TestFlowClassificationHeaders(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	fc := e.cs.FlowcontrolV1()
	level := func(name string) *flowcontrolv1.PriorityLevelConfiguration {
		pl, err := fc.PriorityLevelConfigurations().Create(e.ctx, &flowcontrolv1.PriorityLevelConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: flowcontrolv1.PriorityLevelConfigurationSpec{Type: flowcontrolv1.PriorityLevelEnablementLimited,
				Limited: &flowcontrolv1.LimitedPriorityLevelConfiguration{LimitResponse: flowcontrolv1.LimitResponse{Type: flowcontrolv1.LimitResponseTypeReject}}}},
			metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return pl
	}
	schema := func(name, pl string, precedence int32, subject flowcontrolv1.Subject) *flowcontrolv1.FlowSchema {
		fs, err := fc.FlowSchemas().Create(e.ctx, &flowcontrolv1.FlowSchema{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: flowcontrolv1.FlowSchemaSpec{MatchingPrecedence: precedence,
				PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: pl},
				Rules: []flowcontrolv1.PolicyRulesWithSubjects{{Subjects: []flowcontrolv1.Subject{subject},
					NonResourceRules: []flowcontrolv1.NonResourcePolicyRule{{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}}},
					ResourceRules: []flowcontrolv1.ResourcePolicyRule{{Verbs: []string{"get", "list"}, APIGroups: []string{""},
						Resources: []string{"configmaps"}, Namespaces: []string{"*"}}}}}}},
			metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return fs
	}
	user := func(n string) flowcontrolv1.Subject {
		return flowcontrolv1.Subject{Kind: flowcontrolv1.SubjectKindUser, User: &flowcontrolv1.UserSubject{Name: n}}
	}
	testing1, other := level("e2e-testing-prioritylevel"), level("everyone")
	noxu := schema("e2e-testing-flowschema", testing1.Name, 1000, user("noxu"))
	schema("dangling", "no-such-level", 500, user("noxu"))
	all := schema("everyone", other.Name, 9000, flowcontrolv1.Subject{Kind: flowcontrolv1.SubjectKindGroup,
		Group: &flowcontrolv1.GroupSubject{Name: "system:authenticated"}})
	as := func(path, name string) (string, string) {
		r := e.do(http.MethodGet, path, "", nil, "Impersonate-User", name, "Impersonate-Group", "system:authenticated")
		return r.header.Get(flowcontrolv1.ResponseHeaderMatchedFlowSchemaUID), r.header.Get(flowcontrolv1.ResponseHeaderMatchedPriorityLevelConfigurationUID)
	}
	waitFor(t, "noxu classified by its schema", func() bool {
		fsUID, plUID := as("/version", "noxu")
		return fsUID == string(noxu.UID) && plUID == string(testing1.UID)
	})
	if fsUID, plUID := as("/version", "foo"); fsUID != string(all.UID) || plUID != string(other.UID) {
		t.Fatalf("foo: schema %q level %q", fsUID, plUID)
	}
	if fsUID, _ := as("/api/v1/namespaces/default/configmaps", "noxu"); fsUID != string(noxu.UID) {
		t.Fatalf("resource request: schema %q", fsUID)
	}
	if fsUID, _ := as("/api/v1/namespaces/default/secrets", "noxu"); fsUID != "" {
		t.Fatalf("a request no schema matches: schema %q", fsUID)
	}
}
