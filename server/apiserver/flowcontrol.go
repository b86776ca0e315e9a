package apiserver

import (
	"context"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/auth"
)

// API Priority and Fairness classification: every request is matched,
// after authentication and impersonation, against the stored FlowSchemas
// as kube-apiserver matches them (by matchingPrecedence, then name; a
// schema whose priority level does not exist is skipped), and the
// response carries the UIDs of the schema and its priority level
// (X-Kubernetes-PF-FlowSchema-UID, X-Kubernetes-PF-PriorityLevel-UID).
// Classification only: nothing is queued or rejected by priority level.

// flowRefresh is how stale the classifier's view of the FlowSchemas may be.
const flowRefresh = time.Second

type flowSchemaEntry struct {
	fs    *flowcontrolv1.FlowSchema
	plUID types.UID
}

// flowClassifier holds the decoded FlowSchemas, rebuilt when the stored
// ones or the priority levels change.
type flowClassifier struct {
	mu          sync.Mutex
	checked     time.Time
	fingerprint [4]uint64
	schemas     []flowSchemaEntry
}

// classifyFlow sets the APF response headers of a request from user.
func (s *APIServer) classifyFlow(ctx context.Context, w http.ResponseWriter, user *auth.User, info *requestInfo) {
	schemas := s.flowSchemas(ctx)
	attrs := info.attributes()
	for _, e := range schemas {
		if flowSchemaMatches(e.fs, user, attrs, info.IsResource) {
			w.Header().Set(flowcontrolv1.ResponseHeaderMatchedFlowSchemaUID, string(e.fs.UID))
			w.Header().Set(flowcontrolv1.ResponseHeaderMatchedPriorityLevelConfigurationUID, string(e.plUID))
			return
		}
	}
}

// flowSchemas returns the non-dangling FlowSchemas in matching order,
// looking at the store at most once per flowRefresh.
func (s *APIServer) flowSchemas(ctx context.Context) []flowSchemaEntry {
	c := &s.flows
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if now.Sub(c.checked) < flowRefresh {
		return c.schemas
	}
	c.checked = now
	fsKind, ok1 := s.reg.Lookup(flowcontrolv1.GroupName, "v1", "flowschemas")
	plKind, ok2 := s.reg.Lookup(flowcontrolv1.GroupName, "v1", "prioritylevelconfigurations")
	if !ok1 || !ok2 {
		return nil
	}
	snap, err := s.store.Read(ctx, false, 0)
	if err != nil {
		// Classify by what was read last; the next request tries again.
		s.log.Debug("flow schemas not read", "err", err)
		c.checked = time.Time{}
		return c.schemas
	}
	var fp [4]uint64
	mark := func(i int) func(o *state.Object) bool {
		return func(o *state.Object) bool {
			fp[i]++
			fp[i+1] = max(fp[i+1], o.ModifyIndex)
			return true
		}
	}
	snap.List(fsKind.StorageResource(), "", "", mark(0))
	snap.List(plKind.StorageResource(), "", "", mark(2))
	if fp == c.fingerprint {
		return c.schemas
	}
	levels := map[string]types.UID{}
	snap.List(plKind.StorageResource(), "", "", func(o *state.Object) bool {
		levels[o.Key.Name] = types.UID(o.UID)
		return true
	})
	var schemas []flowSchemaEntry
	snap.List(fsKind.StorageResource(), "", "", func(o *state.Object) bool {
		obj, err := fsKind.Decode(o)
		if err != nil {
			s.log.Warn("flow schema not readable", "key", o.Key, "err", err)
			return true
		}
		fs := obj.(*flowcontrolv1.FlowSchema)
		if uid, ok := levels[fs.Spec.PriorityLevelConfiguration.Name]; ok {
			schemas = append(schemas, flowSchemaEntry{fs: fs, plUID: uid})
		}
		return true
	})
	sort.Slice(schemas, func(i, j int) bool {
		a, b := schemas[i].fs, schemas[j].fs
		if a.Spec.MatchingPrecedence != b.Spec.MatchingPrecedence {
			return a.Spec.MatchingPrecedence < b.Spec.MatchingPrecedence
		}
		return a.Name < b.Name
	})
	c.fingerprint, c.schemas = fp, schemas
	return schemas
}

func flowSchemaMatches(fs *flowcontrolv1.FlowSchema, user *auth.User, a auth.Attributes, resource bool) bool {
	for _, r := range fs.Spec.Rules {
		if !flowSubjectsMatch(r.Subjects, user) {
			continue
		}
		if resource {
			for _, rr := range r.ResourceRules {
				if resourceRuleMatches(&rr, a) {
					return true
				}
			}
			continue
		}
		for _, nr := range r.NonResourceRules {
			if anyOrHas(nr.Verbs, a.Verb) && nonResourceURLMatches(nr.NonResourceURLs, a.Path) {
				return true
			}
		}
	}
	return false
}

func flowSubjectsMatch(subjects []flowcontrolv1.Subject, user *auth.User) bool {
	for _, s := range subjects {
		switch s.Kind {
		case flowcontrolv1.SubjectKindUser:
			if s.User != nil && (s.User.Name == flowcontrolv1.NameAll || s.User.Name == user.Name) {
				return true
			}
		case flowcontrolv1.SubjectKindGroup:
			if s.Group != nil && (s.Group.Name == flowcontrolv1.NameAll || user.InGroup(s.Group.Name)) {
				return true
			}
		case flowcontrolv1.SubjectKindServiceAccount:
			sa := s.ServiceAccount
			ns, name, ok := strings.Cut(strings.TrimPrefix(user.Name, "system:serviceaccount:"), ":")
			if sa != nil && ok && strings.HasPrefix(user.Name, "system:serviceaccount:") && sa.Namespace == ns &&
				(sa.Name == flowcontrolv1.NameAll || sa.Name == name) {
				return true
			}
		}
	}
	return false
}

func resourceRuleMatches(r *flowcontrolv1.ResourcePolicyRule, a auth.Attributes) bool {
	if !anyOrHas(r.Verbs, a.Verb) || !anyOrHas(r.APIGroups, a.Group) {
		return false
	}
	res := a.Resource
	if a.Subresource != "" {
		res += "/" + a.Subresource
	}
	if !anyOrHas(r.Resources, res) {
		return false
	}
	if a.Namespace == "" {
		return r.ClusterScope
	}
	return anyOrHas(r.Namespaces, a.Namespace)
}

func nonResourceURLMatches(patterns []string, path string) bool {
	for _, p := range patterns {
		if p == flowcontrolv1.NonResourceAll || p == path {
			return true
		}
		// "/x/*" and "/x" both cover what is under /x/.
		prefix := strings.TrimSuffix(p, "*")
		if !strings.HasSuffix(prefix, "/") {
			prefix += "/"
		}
		if strings.HasPrefix(path, prefix) {
			return true
		}
	}
	return false
}

func anyOrHas(list []string, v string) bool {
	for _, x := range list {
		if x == "*" || x == v {
			return true
		}
	}
	return false
}
