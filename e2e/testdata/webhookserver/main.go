// Command webhookserver is the admission webhook TestServiceWebhookPod runs
// in a pod: HTTPS on :8443 with /tls/cert.pem and /tls/key.pem; /validate
// refuses ConfigMaps labelled "forbidden", /mutate labels them
// served-by=pod; /convert is the conversion webhook of
// TestCRDConversionWebhookPod's Gadgets (v1 spec.color, v2 spec.colour).
package main

import (
	"encoding/json"
	"log"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// convert renames spec.color (v1) to spec.colour (v2) and back.
func convert(w http.ResponseWriter, r *http.Request) {
	var rev apiextensionsv1.ConversionReview
	if err := json.NewDecoder(r.Body).Decode(&rev); err != nil || rev.Request == nil {
		http.Error(w, "bad review", http.StatusBadRequest)
		return
	}
	resp := &apiextensionsv1.ConversionResponse{UID: rev.Request.UID, Result: metav1.Status{Status: metav1.StatusSuccess}}
	from, to := "color", "colour"
	if rev.Request.DesiredAPIVersion == "example.com/v1" {
		from, to = to, from
	}
	for _, raw := range rev.Request.Objects {
		var obj map[string]any
		if err := json.Unmarshal(raw.Raw, &obj); err != nil {
			http.Error(w, "bad object", http.StatusBadRequest)
			return
		}
		if spec, ok := obj["spec"].(map[string]any); ok {
			if v, ok := spec[from]; ok {
				delete(spec, from)
				spec[to] = v
			}
		}
		obj["apiVersion"] = rev.Request.DesiredAPIVersion
		b, _ := json.Marshal(obj)
		resp.ConvertedObjects = append(resp.ConvertedObjects, runtime.RawExtension{Raw: b})
	}
	rev.Request, rev.Response = nil, resp
	_ = json.NewEncoder(w).Encode(&rev)
}

func serve(decide func(*corev1.ConfigMap) *admissionv1.AdmissionResponse) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var rev admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&rev); err != nil || rev.Request == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		var cm corev1.ConfigMap
		if err := json.Unmarshal(rev.Request.Object.Raw, &cm); err != nil {
			http.Error(w, "bad object", http.StatusBadRequest)
			return
		}
		resp := decide(&cm)
		resp.UID = rev.Request.UID
		rev.Request, rev.Response = nil, resp
		_ = json.NewEncoder(w).Encode(&rev)
	}
}

func main() {
	http.HandleFunc("/validate", serve(func(cm *corev1.ConfigMap) *admissionv1.AdmissionResponse {
		if _, bad := cm.Labels["forbidden"]; bad {
			return &admissionv1.AdmissionResponse{Result: &metav1.Status{Message: "refused by the pod"}}
		}
		return &admissionv1.AdmissionResponse{Allowed: true}
	}))
	http.HandleFunc("/mutate", serve(func(cm *corev1.ConfigMap) *admissionv1.AdmissionResponse {
		patch := `[{"op":"add","path":"/metadata/labels/served-by","value":"pod"}]`
		if cm.Labels == nil {
			patch = `[{"op":"add","path":"/metadata/labels","value":{"served-by":"pod"}}]`
		}
		pt := admissionv1.PatchTypeJSONPatch
		return &admissionv1.AdmissionResponse{Allowed: true, PatchType: &pt, Patch: []byte(patch)}
	}))
	http.HandleFunc("/convert", convert)
	log.Fatal(http.ListenAndServeTLS(":8443", "/tls/cert.pem", "/tls/key.pem", nil))
}
