package apiserver

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net/http"

	"google.golang.org/protobuf/encoding/protowire"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apiserver/pkg/endpoints/handlers/negotiation"
)

// The media types responses are written in, as kube-apiserver serves them
// (it also serves YAML, and CBOR behind a feature gate).
const (
	mediaJSON          = runtime.ContentTypeJSON
	mediaProtobuf      = runtime.ContentTypeProtobuf
	mediaProtobufWatch = runtime.ContentTypeProtobuf + ";stream=watch"
)

// wireSerializers is what responses are negotiated among, JSON first (the
// answer to an empty Accept or */*). Only the media type facts and the
// protobuf envelope (which encodes by the object's own apiVersion and kind,
// without a scheme) are used; the set is never changed.
var wireSerializers = func() []runtime.SerializerInfo {
	var out []runtime.SerializerInfo
	for _, mt := range []string{mediaJSON, mediaProtobuf} {
		info, ok := runtime.SerializerInfoForMediaType(serializer.NewCodecFactory(runtime.NewScheme()).SupportedMediaTypes(), mt)
		if !ok {
			panic("apiserver: no serializer for " + mt)
		}
		out = append(out, info)
	}
	return out
}()

// protoSerializer writes apimachinery's protobuf envelope: "k8s\x00" and a
// runtime.Unknown holding the object's apiVersion, kind and protobuf bytes.
var protoSerializer = protobuf.NewSerializer(nil, nil)

// wireNegotiator offers wireSerializers to k8s.io/apiserver's negotiation
// (the Accept parsing, q-values and order of kube-apiserver).
type wireNegotiator struct{}

func (wireNegotiator) SupportedMediaTypes() []runtime.SerializerInfo { return wireSerializers }
func (wireNegotiator) EncoderForVersion(e runtime.Encoder, _ runtime.GroupVersioner) runtime.Encoder {
	return e
}
func (wireNegotiator) DecoderToVersion(d runtime.Decoder, _ runtime.GroupVersioner) runtime.Decoder {
	return d
}

// endpointRestrictions says which forms an endpoint serves in which media
// type, as kube-apiserver's RequestScope does: Tables in JSON only,
// PartialObjectMetadata(List) in every type, a custom resource (which has no
// protobuf form) in JSON only.
type endpointRestrictions struct{ custom bool }

func (e endpointRestrictions) AllowsMediaTypeTransform(_, subType string, gvk *schema.GroupVersionKind) bool {
	if gvk == nil {
		return !e.custom || subType == "json"
	}
	if gvk.Group != metav1.GroupName || (gvk.Version != "v1" && gvk.Version != "v1beta1") {
		return false
	}
	switch gvk.Kind {
	case "Table":
		return subType == "json"
	case "PartialObjectMetadata", "PartialObjectMetadataList":
		return true
	}
	return false
}

func (endpointRestrictions) AllowsServerVersion(v string) bool { return v == "v1" }
func (endpointRestrictions) AllowsStreamSchema(s string) bool  { return s == "watch" }

// errorWantsProto reports whether an error answer to r is written in
// protobuf: kube-apiserver negotiates a Status as a plain object, and
// answers JSON when nothing in Accept fits.
func errorWantsProto(r *http.Request) bool {
	opts, ok := negotiation.NegotiateMediaTypeOptions(r.Header.Get("Accept"), wireSerializers, negotiation.DefaultEndpointRestrictions)
	return ok && opts.Accepted.MediaType == mediaProtobuf
}

// writeProto writes obj (its apiVersion and kind set) in the protobuf
// envelope, encoded straight into the response. An object with no
// protobuf form is a 500.
func writeProto(w http.ResponseWriter, code int, obj runtime.Object) {
	pw := &protoResponse{w: w, code: code}
	if err := protoSerializer.Encode(obj, pw); err != nil {
		if pw.started {
			// The envelope is written in one Write: an error after it
			// is the connection's.
			return
		}
		writeJSON(w, http.StatusInternalServerError, internalStatus(err))
	}
}

// protoResponse sends the headers with the first write.
type protoResponse struct {
	w       http.ResponseWriter
	code    int
	started bool
}

func (p *protoResponse) Write(b []byte) (int, error) {
	if !p.started {
		p.started = true
		h := p.w.Header()
		h.Set("Content-Type", mediaProtobuf)
		h.Set("Cache-Control", "no-cache, private")
		p.w.WriteHeader(p.code)
	}
	return p.w.Write(b)
}

// internalStatus is err as a 500 Status with its apiVersion and kind.
func internalStatus(err error) *metav1.Status {
	st := apierrors.NewInternalError(err).Status()
	st.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
	return &st
}

// protoEncode returns obj in the protobuf envelope.
func protoEncode(obj runtime.Object) ([]byte, error) {
	var b protoBuffer
	if err := protoSerializer.Encode(obj, &b); err != nil {
		return nil, err
	}
	return b, nil
}

// protoBuffer keeps the one slice the serializer writes, without copying.
type protoBuffer []byte

func (b *protoBuffer) Write(p []byte) (int, error) {
	if *b == nil {
		*b = p
	} else {
		*b = append(*b, p...)
	}
	return len(p), nil
}

// watchFrameHeader returns the start of one protobuf watch frame whose
// object is raw (an object in the protobuf envelope): the 4-byte big-endian
// length of apimachinery's LengthDelimitedFramer, then a metav1.WatchEvent
// (type = 1, object = 2: a runtime.RawExtension, raw = 1) up to raw's
// bytes, which follow it. The object is not copied: its encoding is shared
// by every watch that sends it.
func watchFrameHeader(dst []byte, typ string, raw []byte) []byte {
	ext := protowire.SizeTag(1) + protowire.SizeBytes(len(raw))
	size := protowire.SizeTag(1) + protowire.SizeBytes(len(typ)) + protowire.SizeTag(2) + protowire.SizeBytes(ext)
	dst = binary.BigEndian.AppendUint32(dst, uint32(size))
	dst = protowire.AppendTag(dst, 1, protowire.BytesType)
	dst = protowire.AppendString(dst, typ)
	dst = protowire.AppendTag(dst, 2, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(ext))
	dst = protowire.AppendTag(dst, 1, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(len(raw)))
	return dst
}

// responseJSON returns a response body as JSON: itself if it is JSON, the
// object of a protobuf answer encoded as JSON (for the audit log, whose
// responseObject is JSON whatever the client was sent).
func (s *APIServer) responseJSON(body []byte) ([]byte, bool) {
	if json.Valid(body) {
		return body, true
	}
	if !bytes.HasPrefix(body, []byte(protoMagic)) {
		return nil, false
	}
	obj, gvk, err := s.reg.Codecs().UniversalDeserializer().Decode(body, nil, nil)
	if err != nil {
		return nil, false
	}
	obj.GetObjectKind().SetGroupVersionKind(*gvk)
	b, err := json.Marshal(obj)
	return b, err == nil
}

// protoMagic begins every object in the protobuf envelope.
const protoMagic = "k8s\x00"
