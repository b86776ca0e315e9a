package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilrand "k8s.io/apimachinery/pkg/util/rand"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/admission"
	"github.com/skiff-io/skiff/server/registry"
)

// errReservationTaken: a value admission allocated (a cluster IP, a node
// port) was taken meanwhile through another write; the create starts over.
var errReservationTaken = errors.New("an allocated cluster IP or node port was taken meanwhile; please try again")

// generateNameAttempts bounds the retries of a generateName create that
// hits an existing name.
const generateNameAttempts = 8

// handleCreate serves POST of a new object.
func (s *APIServer) handleCreate(req *request) {
	body, err := s.readBody(req.r)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	obj, warnings, err := s.decode.decodeObject(req.r, body, req.kind)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	dry, err := dryRun(req.r)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	m := mustAccessor(obj)
	if err := checkNamespace(req, m); err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	addWarnings(req.w, warnings)
	out, err := s.create(req.r.Context(), req.kind, obj, dry)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	s.writeObject(req, http.StatusCreated, out)
}

// checkNamespace makes the body's namespace agree with the URL's: set it
// when empty, 400 when different, cleared for cluster-scoped kinds.
func checkNamespace(req *request, m metav1.Object) error {
	ns := req.namespace()
	if !req.kind.Namespaced {
		m.SetNamespace("")
		return nil
	}
	switch m.GetNamespace() {
	case "":
		m.SetNamespace(ns)
	case ns:
	default:
		return badRequest("the namespace of the provided object does not match the namespace sent on the request")
	}
	return nil
}

// create fills the server-set metadata of obj, defaults and validates it,
// checks its namespace and proposes it. With generateName it retries a few
// names on AlreadyExists.
func (s *APIServer) create(ctx context.Context, kind *registry.Kind, obj runtime.Object, dry bool) (runtime.Object, error) {
	m := mustAccessor(obj)
	generated := m.GetName() == "" && m.GetGenerateName() != ""
	for attempt := 0; ; attempt++ {
		if generated {
			m.SetName(generateName(m.GetGenerateName()))
		}
		out, err := s.createOnce(ctx, kind, obj, dry)
		if errors.Is(err, errReservationTaken) {
			if attempt+1 < generateNameAttempts {
				continue
			}
			return nil, apierrors.NewConflict(kind.GroupResource(), m.GetName(), err)
		}
		if generated && apierrors.IsAlreadyExists(err) && attempt+1 < generateNameAttempts {
			continue
		}
		if generated && apierrors.IsAlreadyExists(err) {
			// kube-apiserver's answer when every generated name was taken.
			return nil, apierrors.NewServerTimeoutForKind(kind.GVK.GroupKind(), "POST", 0)
		}
		return out, err
	}
}

func (s *APIServer) createOnce(ctx context.Context, kind *registry.Kind, in runtime.Object, dry bool) (runtime.Object, error) {
	obj := in.DeepCopyObject()
	m := mustAccessor(obj)
	m.SetUID(types.UID(uuid.NewString()))
	m.SetCreationTimestamp(metav1.NewTime(s.now().UTC().Truncate(1e9)))
	m.SetResourceVersion("")
	m.SetSelfLink("")
	m.SetDeletionTimestamp(nil)
	m.SetDeletionGracePeriodSeconds(nil)
	if err := s.admit(ctx, admission.Create, kind, obj, nil, dry); err != nil {
		return nil, err
	}
	kind.PrepareForCreate(obj)
	obj = s.recordCreate(ctx, kind, obj) // managedfields.go
	m = mustAccessor(obj)
	if errs := kind.Validate(obj); len(errs) > 0 {
		return nil, apierrors.NewInvalid(kind.GVK.GroupKind(), m.GetName(), errs)
	}
	if kind.Namespaced {
		if err := s.namespaceAccepts(ctx, kind, m.GetNamespace()); err != nil {
			return nil, err
		}
	}
	data, err := kind.Encode(obj)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	var res *fsm.Result
	for attempt := 0; ; attempt++ {
		extra, err := s.validateAdmission(ctx, admission.Create, kind, obj, nil, dry)
		if err != nil {
			return nil, err
		}
		if dry {
			return obj, nil
		}
		res, err = s.propose(ctx, append([]fsm.Mutation{{
			Op:     fsm.OpCreate,
			Key:    kind.Key(m.GetNamespace(), m.GetName()),
			UID:    string(m.GetUID()),
			Object: data,
		}}, extra...)...)
		if admissionConflict(res, err) && attempt+1 < maxUpdateAttempts {
			continue
		}
		if reservationTaken(res, err) {
			return nil, errReservationTaken
		}
		if err != nil {
			return nil, err
		}
		break
	}
	// The stored object is obj as encoded: answer with it rather than
	// decoding it back.
	if len(res.Objects) == 0 || res.Objects[0] == nil {
		return resultObject(kind, res, 0)
	}
	obj.GetObjectKind().SetGroupVersionKind(kind.GVK)
	m.SetResourceVersion(strconv.FormatUint(res.Objects[0].ModifyIndex, 10))
	return obj, nil
}

// namespaceAccepts answers 404 when the namespace does not exist and 403
// when it is being deleted.
func (s *APIServer) namespaceAccepts(ctx context.Context, kind *registry.Kind, ns string) error {
	nsKind, ok := s.reg.Lookup("", "v1", "namespaces")
	if !ok {
		return nil
	}
	// The local state answers almost always; only a namespace that is not
	// there (or not active) locally is confirmed with a linearizable read,
	// so a create does not pay a Raft round trip for the check.
	snap, err := s.store.Read(ctx, false, 0)
	if err != nil {
		return storeError(err)
	}
	active, found := s.nsCache.active(snap.Get(nsKind.Key("", ns)))
	if !found || !active {
		if snap, err = s.store.Read(ctx, true, 0); err != nil {
			return storeError(err)
		}
		active, found = s.nsCache.active(snap.Get(nsKind.Key("", ns)))
	}
	if !found {
		return apierrors.NewNotFound(nsKind.GroupResource(), ns)
	}
	if !active {
		err := apierrors.NewForbidden(kind.GroupResource(), "",
			fmt.Errorf("unable to create new content in namespace %s because it is being terminated", ns))
		err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{
			Type:    corev1.NamespaceTerminatingCause,
			Message: fmt.Sprintf("namespace %s is being terminated", ns),
			Field:   "metadata.namespace",
		})
		return err
	}
	return nil
}

// namespaceCache remembers, per namespace, whether its stored object (by
// identity: stored objects are immutable) is active, so that the check on
// every create does not decode the namespace. It holds one entry per
// namespace name.
type namespaceCache struct {
	mu      sync.Mutex
	entries map[string]nsEntry
}

type nsEntry struct {
	obj    *state.Object
	active bool
}

// active reports whether o (nil: not found) is an active namespace.
func (c *namespaceCache) active(o *state.Object) (active, found bool) {
	if o == nil {
		return false, false
	}
	c.mu.Lock()
	e, ok := c.entries[o.Key.Name]
	c.mu.Unlock()
	if ok && e.obj == o {
		return e.active, true
	}
	var ns struct {
		Metadata struct {
			DeletionTimestamp *string `json:"deletionTimestamp"`
		} `json:"metadata"`
		Status struct {
			Phase corev1.NamespacePhase `json:"phase"`
		} `json:"status"`
	}
	if err := json.Unmarshal(o.Data, &ns); err != nil {
		return false, true
	}
	e = nsEntry{obj: o, active: ns.Metadata.DeletionTimestamp == nil && ns.Status.Phase != corev1.NamespaceTerminating}
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[string]nsEntry{}
	}
	c.entries[o.Key.Name] = e
	c.mu.Unlock()
	return e.active, true
}

// generateName appends five random lowercase alphanumerics to base, as
// kube-apiserver's SimpleNameGenerator does.
func generateName(base string) string {
	const maxGeneratedNameLength = 63 - 5
	if len(base) > maxGeneratedNameLength {
		base = base[:maxGeneratedNameLength]
	}
	return base + utilrand.String(5)
}
