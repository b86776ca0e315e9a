// Command webhookserver is the admission webhook TestServiceWebhookPod runs
// in a pod: HTTPS on :8443 with /tls/cert.pem and /tls/key.pem; /validate
// refuses ConfigMaps labelled "forbidden", /mutate labels them
// served-by=pod.
package main

import (
	"encoding/json"
	"log"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

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
	log.Fatal(http.ListenAndServeTLS(":8443", "/tls/cert.pem", "/tls/key.pem", nil))
}
