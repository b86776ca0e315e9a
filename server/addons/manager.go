package addons

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
)

// Source is one master's published manifest files.
type Source struct {
	Master string
	Files  []File
}

// FetchFunc returns the content of a file a master published.
type FetchFunc func(ctx context.Context, master string, f File) ([]byte, error)

// Inventory lists the live objects that carry LabelAddon.
type Inventory interface {
	List(ctx context.Context) ([]Live, error)
}

// Live is an object found by an Inventory.
type Live struct {
	Target Target
	Kind   string
	UID    types.UID
	Addon  string
	Mode   Mode
}

// States of an addon in Status.
const (
	StateApplied     = "Applied"
	StateFailed      = "Failed"
	StatePending     = "Pending"
	StateSkipped     = "Skipped"
	StateUnavailable = "Unavailable"
)

// Event reasons (as k3s's addon and helm controllers).
const (
	ReasonApplied  = "AppliedManifest"
	ReasonFailed   = "ApplyManifestFailed"
	ReasonConflict = "ManifestConflict"
	ReasonRemoved  = "RemovedManifest"
)

// Status is one row of `skiff cluster addons`.
type Status struct {
	Addon string `json:"addon"`
	File  string `json:"file"`
	// Masters hold the file as applied (the first one's copy was read).
	Masters     []string  `json:"masters"`
	Mode        string    `json:"mode"`
	Objects     int       `json:"objects"`
	State       string    `json:"status"`
	LastApplied time.Time `json:"lastApplied,omitzero"`
	Message     string    `json:"message,omitempty"`
	SHA256      string    `json:"sha256,omitempty"`
}

// Config is what a Manager needs.
type Config struct {
	Applier   *Applier
	Inventory Inventory
	Fetch     FetchFunc
	// Events records the outcome on an Addon reference in kube-system.
	Events record.EventRecorder
	Logger *slog.Logger
	Now    func() time.Time
}

// Manager reconciles the cluster with the union of the masters' manifests.
// Sync is called from one goroutine; Status from any.
type Manager struct {
	cfg   Config
	log   *slog.Logger
	cache map[string][]byte

	mu     sync.Mutex
	status map[string]Status
	// conflicts: the last conflict message per addon (event on change).
	conflicts map[string]string
}

// NewManager makes a Manager.
func NewManager(cfg Config) *Manager {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Manager{cfg: cfg, log: cfg.Logger.With("component", "addon-manager"),
		cache: map[string][]byte{}, status: map[string]Status{}, conflicts: map[string]string{}}
}

// Status returns the addons' status as of the last Sync, sorted by name.
func (m *Manager) Status() []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Status, 0, len(m.status))
	for _, s := range m.status {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addon < out[j].Addon })
	return out
}

// candidate is one master's file for an addon.
type candidate struct {
	master string
	file   File
}

func (c candidate) usable() bool { return !c.file.Skipped && c.file.Error == "" }

// addonPlan is an addon's resolved source and objects during a Sync.
type addonPlan struct {
	name    string
	winner  candidate
	holders []string
	skipped []string // masters with a .skip marker
	// conflict names the masters whose copies differ and were not applied.
	conflict string
	objs     []*unstructured.Unstructured
	// complete: every object of the manifest is known (parsed and
	// mapped), so objects it no longer holds may be deleted.
	complete                             bool
	state                                string
	errs                                 []string
	mode                                 string
	created, updated, unchanged, deleted int
}

// Resolve groups the sources' files by addon and picks the copy to apply:
// when masters hold different copies, the newest file wins (then the
// first master by name). An addon disabled by a .skip marker on any master
// is skipped.
func resolve(sources []Source) map[string]*addonPlan {
	cands := map[string][]candidate{}
	for _, src := range sources {
		for _, f := range src.Files {
			cands[f.Addon()] = append(cands[f.Addon()], candidate{master: src.Master, file: f})
		}
	}
	plans := map[string]*addonPlan{}
	for name, cs := range cands {
		p := &addonPlan{name: name}
		plans[name] = p
		sort.SliceStable(cs, func(i, j int) bool {
			a, b := cs[i], cs[j]
			if ua, ub := a.usable(), b.usable(); ua != ub {
				return ua // a readable copy wins over a newer unreadable one
			}
			if !a.file.ModTime.Equal(b.file.ModTime) {
				return a.file.ModTime.After(b.file.ModTime)
			}
			if a.master != b.master {
				return a.master < b.master
			}
			return a.file.Name < b.file.Name
		})
		for _, c := range cs {
			if c.file.Skipped {
				p.skipped = append(p.skipped, c.master)
			}
		}
		p.winner = cs[0]
		var others []string
		for _, c := range cs {
			if c.file.SHA256 == p.winner.file.SHA256 && c.file.Name == p.winner.file.Name && c.file.Error == "" {
				p.holders = append(p.holders, c.master)
			} else if !c.file.Skipped {
				others = append(others, c.master+":"+c.file.Name)
			}
		}
		if len(p.holders) == 0 {
			p.holders = []string{p.winner.master}
		}
		if len(others) > 0 {
			p.conflict = fmt.Sprintf("%s differs between masters: applying %s's copy (the newest, modified %s), not %s's",
				p.winner.file.Name, p.winner.master, p.winner.file.ModTime.Format(time.RFC3339), strings.Join(others, ", "))
		}
	}
	return plans
}

// planned is one object to apply.
type planned struct {
	plan   *addonPlan
	obj    *unstructured.Unstructured
	target Target
	mode   Mode
}

// Sync makes one pass: it applies every addon the sources hold and, when
// prune is set, deletes the objects of removed files and the objects
// manifests no longer hold. It returns an error only when the pass could
// not look at the cluster at all; addons' failures are in their status.
func (m *Manager) Sync(ctx context.Context, sources []Source, prune bool) error {
	plans := resolve(sources)
	names := make([]string, 0, len(plans))
	for n := range plans {
		names = append(names, n)
	}
	sort.Strings(names)
	var todo []planned
	at := map[string]int{} // object ID -> index in todo
	for _, n := range names {
		p := plans[n]
		m.load(ctx, p)
		for _, o := range p.objs {
			t, err := m.cfg.Applier.Resolve(o)
			if err != nil {
				p.errs = append(p.errs, err.Error())
				if !errors.Is(err, ErrNotServed) {
					p.complete = false
				}
				continue
			}
			mode, _ := ModeOf(o) // Parse checked it
			pl := planned{plan: p, obj: o, target: t, mode: mode}
			i, dup := at[t.ID()]
			if !dup {
				at[t.ID()] = len(todo)
				todo = append(todo, pl)
				continue
			}
			prev := todo[i]
			if prev.plan == p {
				todo[i] = pl // twice in one file: the last one, as kubectl apply
				continue
			}
			// One object in two addons: the newest file keeps it.
			win, lose := prev, pl
			if pl.plan.winner.file.ModTime.After(prev.plan.winner.file.ModTime) {
				win, lose = pl, prev
				todo[i] = pl
			}
			lose.plan.errs = append(lose.plan.errs, fmt.Sprintf("%s is also in %s (newer): left to it", t, win.plan.winner.file.Name))
		}
	}
	sort.SliceStable(todo, func(i, j int) bool { return KindRank(todo[i].obj.GetKind()) < KindRank(todo[j].obj.GetKind()) })
	keep := map[string]bool{}
	for _, pl := range todo {
		keep[pl.target.ID()] = true
		action, err := m.cfg.Applier.Apply(ctx, pl.target, pl.obj, pl.mode)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch {
		case err != nil:
			pl.plan.errs = append(pl.plan.errs, fmt.Sprintf("%s: %v", pl.target, err))
		case action == Created:
			pl.plan.created++
		case action == Updated:
			pl.plan.updated++
		default:
			pl.plan.unchanged++
		}
	}
	var removed map[string]int
	if prune {
		var err error
		if removed, err = m.prune(ctx, plans, keep); err != nil {
			m.finish(plans, nil)
			return err
		}
	}
	m.finish(plans, removed)
	return nil
}

// load fetches and parses an addon's manifest.
func (m *Manager) load(ctx context.Context, p *addonPlan) {
	w := p.winner
	switch {
	case len(p.skipped) > 0:
		p.state = StateSkipped
		return
	case w.file.Error != "":
		p.state = StateFailed
		p.errs = append(p.errs, fmt.Sprintf("cannot read %s on %s: %s", w.file.Name, w.master, w.file.Error))
		return
	}
	key := w.master + "/" + w.file.Name + "@" + w.file.SHA256
	content, ok := m.cache[key]
	if !ok {
		var err error
		content, err = m.cfg.Fetch(ctx, w.master, w.file)
		if err != nil {
			p.state = StateUnavailable
			p.errs = append(p.errs, fmt.Sprintf("cannot fetch %s from %s (its objects are left as they are): %v", w.file.Name, w.master, err))
			return
		}
		m.cache[key] = content
	}
	objs, err := Parse(p.name, content)
	if err != nil {
		p.state = StateFailed
		p.errs = append(p.errs, fmt.Sprintf("%s: %v", w.file.Name, err))
		return
	}
	p.objs, p.complete = objs, true
	SortForApply(p.objs)
	modes := map[Mode]bool{}
	for _, o := range objs {
		mode, _ := ModeOf(o)
		modes[mode] = true
	}
	switch {
	case len(modes) > 1:
		p.mode = "Mixed"
	case modes[ModeEnsureExists]:
		p.mode = string(ModeEnsureExists)
	case modes[ModeReconcile]:
		p.mode = string(ModeReconcile)
	}
}

// prune deletes live addon objects in mode Reconcile whose addon no master
// holds any more, or whose (completely known) manifest no longer holds
// them. Objects in mode EnsureExists are never deleted (as
// kube-addon-manager). It returns the deletions per addon.
func (m *Manager) prune(ctx context.Context, plans map[string]*addonPlan, keep map[string]bool) (map[string]int, error) {
	objs, err := m.cfg.Inventory.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list addon objects: %w", err)
	}
	sort.SliceStable(objs, func(i, j int) bool { return KindRank(objs[i].Kind) > KindRank(objs[j].Kind) })
	removed := map[string]int{}
	for _, o := range objs {
		if o.Mode == ModeEnsureExists || keep[o.Target.ID()] {
			continue
		}
		p, known := plans[o.Addon]
		if known && !p.complete {
			continue // skipped, unreadable or unparsable: left alone
		}
		if err := m.cfg.Applier.Delete(ctx, o.Target, o.UID); err != nil {
			if known {
				p.errs = append(p.errs, fmt.Sprintf("delete %s: %v", o.Target, err))
			} else {
				m.log.Warn("delete object of a removed manifest", "addon", o.Addon, "object", o.Target.String(), "err", err)
			}
			continue
		}
		m.log.Info("deleted addon object", "addon", o.Addon, "object", o.Target.String())
		if known {
			p.deleted++
		} else {
			removed[o.Addon]++
		}
	}
	return removed, nil
}

// finish records each addon's outcome and the events of what changed.
func (m *Manager) finish(plans map[string]*addonPlan, removed map[string]int) {
	now := m.cfg.Now().UTC().Truncate(time.Second)
	m.mu.Lock()
	prev := m.status // replaced, never changed in place
	m.mu.Unlock()
	next := make(map[string]Status, len(plans))
	for name, p := range plans {
		w := p.winner
		st := Status{Addon: name, File: w.file.Name, Masters: p.holders, Mode: p.mode, Objects: len(p.objs), SHA256: w.file.SHA256}
		old, had := prev[name]
		switch {
		case p.state == StateSkipped:
			st.State = StateSkipped
			st.Message = fmt.Sprintf("disabled by %s.skip on %s: its objects are left as they are", w.file.Name, strings.Join(p.skipped, ", "))
		case p.state != "":
			st.State = p.state
		case len(p.errs) > 0:
			st.State = StateFailed
		default:
			st.State = StateApplied
		}
		if len(p.errs) > 0 {
			st.Message = strings.Join(p.errs, "; ")
		}
		if st.State == StateApplied {
			changes := p.created + p.updated + p.deleted
			// When the manifest last took effect (or this leader first
			// found it applied), not when it was last compared.
			st.LastApplied = old.LastApplied
			if !had || old.SHA256 != st.SHA256 || old.State != StateApplied || changes > 0 || st.LastApplied.IsZero() {
				st.LastApplied = now
			}
			if changes > 0 && had && old.SHA256 == st.SHA256 && old.State == StateApplied {
				st.Message = fmt.Sprintf("restored %d object(s) changed or deleted in the API", p.created+p.updated)
			}
			if changes > 0 || (had && old.State != StateApplied) {
				m.event(name, corev1.EventTypeNormal, ReasonApplied, "Applied %s from %s: %d object(s): %d created, %d updated, %d unchanged, %d deleted",
					w.file.Name, w.master, len(p.objs), p.created, p.updated, p.unchanged, p.deleted)
			}
			if !had || old.SHA256 != st.SHA256 || changes > 0 {
				m.log.Info("applied manifest", "file", w.file.Name, "master", w.master, "objects", len(p.objs),
					"created", p.created, "updated", p.updated, "deleted", p.deleted)
			}
		} else if had {
			st.LastApplied = old.LastApplied
		}
		if st.State == StateFailed || st.State == StateUnavailable {
			if !had || old.Message != st.Message || old.State != st.State {
				m.event(name, corev1.EventTypeWarning, ReasonFailed, "%s from %s: %s", w.file.Name, w.master, st.Message)
				m.log.Warn("manifest not applied", "file", w.file.Name, "master", w.master, "status", st.State, "message", st.Message)
			}
		}
		if p.conflict != "" && m.conflicts[name] != p.conflict {
			m.event(name, corev1.EventTypeWarning, ReasonConflict, "%s", p.conflict)
			m.log.Warn("manifest differs between masters", "file", w.file.Name, "detail", p.conflict)
		}
		m.conflicts[name] = p.conflict
		if p.conflict != "" && st.Message == "" {
			st.Message = p.conflict
		}
		next[name] = st
	}
	for name, n := range removed {
		m.event(name, corev1.EventTypeNormal, ReasonRemoved, "Manifest of addon %s removed from every master: deleted %d object(s)", name, n)
		m.log.Info("manifest removed: objects deleted", "addon", name, "deleted", n)
		delete(m.conflicts, name)
	}
	m.mu.Lock()
	m.status = next
	m.mu.Unlock()
}

// event records an event on the addon's reference: an Addon in kube-system
// named after the file, as k3s's Addon objects (the API serves no such
// kind; `kubectl get events -n kube-system` shows them).
func (m *Manager) event(addon, typ, reason, format string, args ...any) {
	if m.cfg.Events == nil {
		return
	}
	ref := &corev1.ObjectReference{Kind: "Addon", APIVersion: "skiff.io/v1", Namespace: "kube-system", Name: addon}
	m.cfg.Events.Eventf(ref, typ, reason, format, args...)
}

// Forget drops fetched contents no longer published.
func (m *Manager) Forget(sources []Source) {
	used := map[string]bool{}
	for _, src := range sources {
		for _, f := range src.Files {
			used[src.Master+"/"+f.Name+"@"+f.SHA256] = true
		}
	}
	for k := range m.cache {
		if !used[k] {
			delete(m.cache, k)
		}
	}
}
