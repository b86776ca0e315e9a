package apiserver

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/registry"
)

// listOptions are the query parameters of list and watch.
type listOptions struct {
	label           labels.Selector
	field           fields.Selector
	resourceVersion string
	rvMatch         metav1.ResourceVersionMatch
	limit           int64
	cont            *continueToken
	// watch only
	allowBookmarks    bool
	sendInitialEvents *bool
	timeoutSeconds    int64
}

// parseListOptions reads and checks list/watch parameters for kind. The
// field selector may use only the kind's selectable fields.
func parseListOptions(r *http.Request, kind *registry.Kind, watch bool) (*listOptions, error) {
	return parseListQuery(r.URL.Query(), kind, watch)
}

// parseListQuery is parseListOptions over the query parameters alone.
func parseListQuery(q url.Values, kind *registry.Kind, watch bool) (*listOptions, error) {
	opts := &listOptions{label: labels.Everything(), field: fields.Everything()}
	var err error
	if v := q.Get("labelSelector"); v != "" {
		if opts.label, err = labels.Parse(v); err != nil {
			return nil, badRequest("unable to parse requirement: %v", err)
		}
	}
	if v := q.Get("fieldSelector"); v != "" {
		if opts.field, err = fields.ParseSelector(v); err != nil {
			return nil, badRequest("%v", err)
		}
	}
	for _, req := range opts.field.Requirements() {
		if !kind.SupportsField(req.Field) {
			return nil, badRequest("field label not supported: %s", req.Field)
		}
	}
	opts.resourceVersion = q.Get("resourceVersion")
	if _, err := parseRV(opts.resourceVersion); err != nil {
		return nil, err
	}
	opts.rvMatch = metav1.ResourceVersionMatch(q.Get("resourceVersionMatch"))
	if v := q.Get("limit"); v != "" && !watch {
		if opts.limit, err = strconv.ParseInt(v, 10, 64); err != nil {
			return nil, badRequest("invalid limit %q: %v", v, err)
		}
		if opts.limit < 0 {
			opts.limit = 0
		}
	}
	if v := q.Get("continue"); v != "" && !watch {
		if opts.cont, err = decodeContinue(v, kind.StorageResource()); err != nil {
			return nil, err
		}
	}
	opts.allowBookmarks = isTrue(q.Get("allowWatchBookmarks"))
	if v := q.Get("sendInitialEvents"); v != "" {
		b := isTrue(v)
		opts.sendInitialEvents = &b
	}
	if v := q.Get("timeoutSeconds"); v != "" {
		if opts.timeoutSeconds, err = strconv.ParseInt(v, 10, 64); err != nil {
			return nil, badRequest("invalid timeoutSeconds %q: %v", v, err)
		}
	}
	return opts, validateListOptions(opts, watch)
}

// validateListOptions applies kube-apiserver's ListOptions rules.
func validateListOptions(o *listOptions, watch bool) error {
	var errs field.ErrorList
	rvm := field.NewPath("resourceVersionMatch")
	switch o.rvMatch {
	case "":
	case metav1.ResourceVersionMatchNotOlderThan, metav1.ResourceVersionMatchExact:
		if o.resourceVersion == "" && !(watch && o.rvMatch == metav1.ResourceVersionMatchNotOlderThan && o.sendInitialEvents != nil) {
			errs = append(errs, field.Forbidden(rvm, "resourceVersionMatch is forbidden unless resourceVersion is provided"))
		}
		if o.cont != nil {
			errs = append(errs, field.Forbidden(rvm, "resourceVersionMatch is forbidden when continue is provided"))
		}
		if o.rvMatch == metav1.ResourceVersionMatchExact && o.resourceVersion == "0" {
			errs = append(errs, field.Forbidden(rvm, "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\""))
		}
	default:
		errs = append(errs, field.NotSupported(rvm, o.rvMatch, []string{string(metav1.ResourceVersionMatchExact), string(metav1.ResourceVersionMatchNotOlderThan)}))
	}
	if o.sendInitialEvents != nil {
		if !watch {
			errs = append(errs, field.Forbidden(field.NewPath("sendInitialEvents"), "sendInitialEvents is forbidden for list"))
		} else if o.rvMatch != metav1.ResourceVersionMatchNotOlderThan {
			errs = append(errs, field.Forbidden(rvm, "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"))
		}
	} else if watch && o.rvMatch != "" {
		errs = append(errs, field.Forbidden(rvm, "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"))
	}
	if o.cont != nil && o.resourceVersion != "" && o.resourceVersion != "0" {
		errs = append(errs, field.Forbidden(field.NewPath("resourceVersion"), "specifying resource version is not allowed when using continue"))
	}
	if len(errs) > 0 {
		return apierrors.NewInvalid(schema.GroupKind{Group: metav1.GroupName, Kind: "ListOptions"}, "", errs)
	}
	return nil
}

// matches reports whether obj passes the label and field selectors.
func (o *listOptions) matches(kind *registry.Kind, obj runtime.Object) bool {
	if !o.label.Empty() {
		m := mustAccessor(obj)
		if !o.label.Matches(labels.Set(m.GetLabels())) {
			return false
		}
	}
	if !o.field.Empty() && !o.field.Matches(kind.Fields(obj)) {
		return false
	}
	return true
}

// keyOnly reports whether the selectors need only an object's key: no
// label selector, and field selectors on metadata.name and
// metadata.namespace only.
func (o *listOptions) keyOnly() bool {
	if !o.label.Empty() {
		return false
	}
	for _, r := range o.field.Requirements() {
		if r.Field != "metadata.name" && r.Field != "metadata.namespace" {
			return false
		}
		switch r.Operator {
		case selection.Equals, selection.DoubleEquals, selection.NotEquals:
		default:
			return false
		}
	}
	return true
}

// matchesKey applies the field selectors of a keyOnly watch to an object's
// key.
func (o *listOptions) matchesKey(k state.Key) bool {
	for _, r := range o.field.Requirements() {
		v := k.Name
		if r.Field == "metadata.namespace" {
			v = k.Namespace
		}
		if (v == r.Value) == (r.Operator == selection.NotEquals) {
			return false
		}
	}
	return true
}

// hasSelectors reports whether the list is filtered.
func (o *listOptions) hasSelectors() bool { return !o.label.Empty() || !o.field.Empty() }

// continueToken is the opaque "continue" of a paginated list: the list's
// resourceVersion (-1: continue at the latest, after the token expired,
// as kube-apiserver's inconsistent continue), the ID of the last object
// returned and when the list's first page was read (Unix seconds; 0 in
// tokens of older releases, which do not expire).
type continueToken struct {
	APIVersion      string `json:"v"`
	ResourceVersion int64  `json:"rv"`
	Start           string `json:"start"`
	At              int64  `json:"at,omitempty"`
}

const continueVersion = "meta.k8s.io/v1"

// continueCompactInterval is how long a continue token stays consistent:
// kube-apiserver's tokens expire when etcd compacts their revision away,
// every 5 minutes by default (--etcd-compaction-interval), that is 5 to
// 10 minutes after the first page. Skiff keeps no old states to compact:
// its tokens expire 5 minutes after the first page was read.
const continueCompactInterval = 5 * time.Minute

func encodeContinue(rv int64, lastID string, at time.Time) string {
	b, _ := json.Marshal(continueToken{APIVersion: continueVersion, ResourceVersion: rv, Start: lastID, At: at.Unix()})
	return base64.RawURLEncoding.EncodeToString(b)
}

// expired reports whether the list t continues was read so long before
// now that its resourceVersion counts as compacted.
func (t *continueToken) expired(now time.Time) bool {
	return t.ResourceVersion > 0 && t.At > 0 && now.Sub(time.Unix(t.At, 0)) >= continueCompactInterval
}

// inconsistentContinue is kube-apiserver's 410 for an expired continue
// token: its status carries a token that continues after the same object
// at the latest resourceVersion.
func inconsistentContinue(t *continueToken, now time.Time) error {
	err := apierrors.NewResourceExpired("The provided continue parameter is too old to display a consistent list result. " +
		"You can start a new list without the continue parameter, or use the continue token in this response to retrieve " +
		"the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that " +
		"were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")
	err.ErrStatus.ListMeta.Continue = encodeContinue(-1, t.Start, now)
	return err
}

func decodeContinue(s, storageResource string) (*continueToken, error) {
	bad := func(why string) error {
		return badRequest("continue key is not valid: %s", why)
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, bad(err.Error())
	}
	var t continueToken
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, bad(err.Error())
	}
	if t.APIVersion != continueVersion {
		return nil, bad(fmt.Sprintf("incorrect encoded start resourceVersion (version %s)", t.APIVersion))
	}
	if t.ResourceVersion == 0 || t.ResourceVersion < -1 || !strings.HasPrefix(t.Start, storageResource+"\x00") {
		return nil, bad("it does not belong to this list")
	}
	return &t, nil
}
