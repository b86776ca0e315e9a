package apiserver

import (
	"bytes"
	"encoding/json"
	"net/url"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/registry"
)

// Fuzz targets for what the API server decodes from the network (issue
// 15): request bodies (JSON, YAML, protobuf) and what a create does with
// them, the three patch types, and the list options with their label and
// field selectors. `make fuzz` runs each for a while; the seeds are in
// testdata/fuzz and below. Each input must be answered (an error is an
// answer), never crash, and the bounds must hold.

var fuzzReg = registry.New()

// fuzzKind picks a served kind.
func fuzzKind(i uint8) *registry.Kind {
	kinds := fuzzReg.Kinds()
	return kinds[int(i)%len(kinds)]
}

var fuzzMediaTypes = []string{runtime.ContentTypeJSON, runtime.ContentTypeYAML, runtime.ContentTypeProtobuf}

// FuzzDecodeBody: a request body of any media type, for any kind, is
// decoded as a create decodes it, then defaulted, validated and stored as a
// create would: errors are fine, panics are not, and what is stored
// decodes again.
func FuzzDecodeBody(f *testing.F) {
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", Labels: map[string]string{"a": "b"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i",
			Ports: []corev1.ContainerPort{{ContainerPort: 80}}, Env: []corev1.EnvVar{{Name: "E", Value: "v"}}}}},
	}
	js, _ := json.Marshal(pod)
	var pb bytes.Buffer
	_ = protobuf.NewSerializer(fuzzReg.Scheme(), fuzzReg.Scheme()).Encode(pod, &pb)
	podKind := uint8(0)
	for i, k := range fuzzReg.Kinds() {
		if k.GVK.Kind == "Pod" {
			podKind = uint8(i)
		}
	}
	f.Add(podKind, uint8(0), uint8(1), js)
	f.Add(podKind, uint8(1), uint8(1), []byte("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: i\n"))
	f.Add(podKind, uint8(2), uint8(0), pb.Bytes())
	f.Add(uint8(3), uint8(0), uint8(2), []byte(`{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"x"},"data":{"a":"b"},"unknown":1}`))
	d := newDecoder(fuzzReg)
	validations := []string{fieldValidationIgnore, fieldValidationWarn, fieldValidationStrict}
	f.Fuzz(func(t *testing.T, ki, mi, vi uint8, body []byte) {
		k := fuzzKind(ki)
		obj, _, err := d.decodeAs(fuzzMediaTypes[int(mi)%len(fuzzMediaTypes)], validations[int(vi)%len(validations)], body, k)
		if err != nil {
			return
		}
		m := mustAccessor(obj)
		if k.Namespaced {
			m.SetNamespace("default")
		} else {
			m.SetNamespace("")
		}
		m.SetUID("uid")
		k.PrepareForCreate(obj)
		_ = k.Validate(obj)
		_ = k.ValidateUpdate(obj.DeepCopyObject(), obj)
		_ = k.Fields(obj)
		data, err := k.Encode(obj)
		if err != nil {
			return // not representable as JSON (a NaN, say): refused
		}
		if _, err := k.Decode(state.NewObject(k.Key(m.GetNamespace(), m.GetName()), "uid", data, 1, 1)); err != nil {
			t.Fatalf("%s: stored form does not decode: %v: %s", k.GVK, err, data)
		}
	})
}

// fuzzPod is the object the patch fuzzers patch.
var fuzzPod = func() []byte {
	b, _ := json.Marshal(&corev1.Pod{
		TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", ResourceVersion: "7", Labels: map[string]string{"a": "b"},
			Finalizers: []string{"x/a", "x/b"}, OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "X", Name: "o", UID: "u"}}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{
				{Name: "a", Image: "i", Env: []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "B", Value: "2"}},
					Ports: []corev1.ContainerPort{{ContainerPort: 80, Protocol: corev1.ProtocolTCP}}, VolumeMounts: []corev1.VolumeMount{{Name: "v", MountPath: "/v"}}},
				{Name: "b", Image: "j"},
			},
			Volumes:     []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			Tolerations: []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists}},
		},
	})
	return b
}()

// fuzzPatch applies a patch of type pt to fuzzPod within a 64 KiB result
// bound, as the PATCH handler does, and checks the bounds held.
func fuzzPatch(t *testing.T, pt types.PatchType, body []byte) {
	p, err := checkPatch(pt, body)
	if err != nil {
		return
	}
	p.schemaObj, p.maxResult = &corev1.Pod{}, 64<<10
	start := time.Now()
	out, err := p.apply(fuzzPod)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a %d-byte %s took %s", len(body), pt, d)
	}
	if err != nil {
		return
	}
	if len(out) > 64<<10 && len(out) > len(fuzzPod) {
		t.Fatalf("result of %d bytes past the bound", len(out))
	}
	_, _, _ = newDecoder(fuzzReg).decodeAs(runtime.ContentTypeJSON, fieldValidationStrict, out, fuzzKindOf("Pod"))
}

func fuzzKindOf(kind string) *registry.Kind {
	for _, k := range fuzzReg.Kinds() {
		if k.GVK.Kind == kind {
			return k
		}
	}
	panic(kind)
}

// FuzzJSONPatch: any JSON patch of a pod is applied or refused, within the
// copy and size bounds.
func FuzzJSONPatch(f *testing.F) {
	for _, s := range []string{
		`[{"op":"replace","path":"/spec/containers/0/image","value":"k"}]`,
		`[{"op":"add","path":"/metadata/labels/c","value":"d"},{"op":"remove","path":"/metadata/finalizers/0"}]`,
		`[{"op":"copy","from":"/spec","path":"/spec/x"},{"op":"copy","from":"/spec","path":"/spec/y"},{"op":"copy","from":"/spec","path":"/spec/z"}]`,
		`[{"op":"move","from":"/spec/containers/1","path":"/spec/containers/-"},{"op":"test","path":"/metadata/name","value":"p"}]`,
		`[{"op":"add","path":"/spec/containers/-1","value":{}}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) { fuzzPatch(t, types.JSONPatchType, body) })
}

// FuzzMergePatch: any JSON merge patch of a pod.
func FuzzMergePatch(f *testing.F) {
	for _, s := range []string{
		`{"metadata":{"labels":{"a":null,"c":"d"}}}`,
		`{"spec":{"containers":[{"name":"z","image":"z"}]}}`,
		`{"spec":null}`,
		`[1,2]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) { fuzzPatch(t, types.MergePatchType, body) })
}

// FuzzStrategicMergePatch: any strategic merge patch of a pod, its list
// merging measured first.
func FuzzStrategicMergePatch(f *testing.F) {
	for _, s := range []string{
		`{"spec":{"containers":[{"name":"a","image":"k"},{"name":"c","image":"c"}]}}`,
		`{"spec":{"$setElementOrder/containers":[{"name":"b"},{"name":"a"}],"containers":[{"name":"b","env":[{"name":"X","value":"y"}]}]}}`,
		`{"metadata":{"$deleteFromPrimitiveList/finalizers":["x/a"],"finalizers":["x/c"]}}`,
		`{"spec":{"containers":[{"name":"a","$patch":"delete"}],"volumes":[{"$patch":"replace"}]}}`,
		`{"spec":{"$retainKeys":["containers"],"tolerations":[{"key":"z"}]}}`,
		`{"spec":{"containers":[{"name":{"x":1}}]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) { fuzzPatch(t, types.StrategicMergePatchType, body) })
}

// FuzzListOptions: any label selector, field selector and other list or
// watch parameters (resourceVersion, limit, continue, ...) for any kind
// are parsed or refused; a parsed one filters sample objects, and the
// selectors a watch applies to keys alone agree with the full ones.
func FuzzListOptions(f *testing.F) {
	for _, s := range [][3]string{
		{"a=b,c in (d,e),!f", "metadata.name=x", ""},
		{"", "metadata.namespace!=default,metadata.name==p", "watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"},
		{"", "spec.nodeName=n1", "limit=5&continue=eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6Miwic3RhcnQiOiJwb2RzXHUwMDAwIn0"},
		{"a notin (b),c", "", "resourceVersion=0&timeoutSeconds=5&allowWatchBookmarks=true"},
		{"===", "\\,", "resourceVersion=x"},
		{"a in (b", "metadata.name=a,metadata.name!=a", ""},
	} {
		f.Add(uint8(0), false, s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, ki uint8, watch bool, labelSelector, fieldSelector, query string) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		if labelSelector != "" {
			q.Set("labelSelector", labelSelector)
		}
		if fieldSelector != "" {
			q.Set("fieldSelector", fieldSelector)
		}
		k := fuzzKind(ki)
		opts, err := parseListQuery(q, k, watch)
		if err != nil {
			return
		}
		_ = opts.label.String()
		_ = opts.field.String()
		for _, ns := range []string{"default", "other"} {
			for _, name := range []string{"p", "x", "a"} {
				obj := k.New()
				m := mustAccessor(obj)
				m.SetName(name)
				if k.Namespaced {
					m.SetNamespace(ns)
				}
				m.SetLabels(map[string]string{"a": "b", "c": "d"})
				full := opts.matches(k, obj)
				if opts.keyOnly() {
					if byKey := opts.matchesKey(k.Key(m.GetNamespace(), name)); byKey != full {
						t.Fatalf("%s %q %q: by key %v, by object %v (%s/%s)", k.GVK.Kind, labelSelector, fieldSelector, byKey, full, m.GetNamespace(), name)
					}
				}
			}
		}
	})
}
