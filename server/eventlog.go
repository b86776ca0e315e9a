package server

import (
	"context"
	"errors"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"

	"github.com/skiff-io/skiff/client/logrecord"
	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/registry"
)

// The Events log: every master writes the cluster's Events (core/v1 and
// events.k8s.io) from its own state into its own log store as kind=event
// records, source event/<uid>, offset the Event's resourceVersion. The
// store's high-water marks drop what it already holds, so a restart
// relists without duplicates.

// eventLogBatch bounds the records written at once.
const eventLogBatch = 1000

func (s *Server) runEventLog() {
	defer s.wg.Done()
	if s.logging == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-s.shutdownCh; cancel() }()
	reg := registry.New()
	core, _ := reg.Lookup("", "v1", "events")
	v1, _ := reg.Lookup("events.k8s.io", "v1", "events")
	kinds := map[string]*registry.Kind{}
	for _, k := range []*registry.Kind{core, v1} {
		if k != nil {
			kinds[k.StorageResource()] = k
		}
	}
	for ctx.Err() == nil {
		err := s.eventLogRound(ctx, kinds)
		if ctx.Err() != nil {
			return
		}
		if err != nil && !errors.Is(err, fsm.ErrExpired) {
			s.log.Warn("events log", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// eventLogRound lists every Event, then follows the watch until it
// expires (a restore, or a ring overrun) or ctx ends.
func (s *Server) eventLogRound(ctx context.Context, kinds map[string]*registry.Kind) error {
	snap := s.fsm.Read()
	index := snap.Index()
	var batch []logrecord.Record
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, _, err := s.logging.store.Ingest(batch, nil)
		batch = batch[:0]
		return err
	}
	var ferr error
	for res, kind := range kinds {
		snap.List(res, "", "", func(o *state.Object) bool {
			if rec, ok := eventRecord(kind, o); ok {
				batch = append(batch, rec)
			}
			if len(batch) >= eventLogBatch {
				ferr = flush()
			}
			return ferr == nil
		})
		if ferr != nil {
			return ferr
		}
	}
	if err := flush(); err != nil {
		return err
	}
	w, err := s.fsm.Watch(index)
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		evs, err := w.Next(ctx)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if ev.Type == fsm.Deleted || ev.Object == nil {
				continue
			}
			kind, ok := kinds[ev.Object.Key.Resource]
			if !ok {
				continue
			}
			if rec, ok := eventRecord(kind, ev.Object); ok {
				batch = append(batch, rec)
			}
		}
		if err := flush(); err != nil {
			return err
		}
	}
}

// eventRecord turns a stored Event into a log record.
func eventRecord(kind *registry.Kind, o *state.Object) (logrecord.Record, bool) {
	obj, err := kind.Decode(o)
	if err != nil {
		return logrecord.Record{}, false
	}
	f := map[string]string{logrecord.FieldKind: logrecord.KindEvent, logrecord.FieldNamespace: o.Key.Namespace,
		"event": o.Key.Name}
	var msg string
	var t time.Time
	latest := func(ts ...time.Time) {
		for _, x := range ts {
			if x.After(t) {
				t = x
			}
		}
	}
	var objKind, objName, node string
	switch e := obj.(type) {
	case *corev1.Event:
		msg = e.Message
		f["reason"], f["type"] = e.Reason, e.Type
		objKind, objName = e.InvolvedObject.Kind, e.InvolvedObject.Name
		f["source"] = e.Source.Component
		if f["source"] == "" {
			f["source"] = e.ReportingController
		}
		node = e.Source.Host
		if e.Count > 0 {
			f["count"] = strconv.Itoa(int(e.Count))
		}
		latest(e.CreationTimestamp.Time, e.FirstTimestamp.Time, e.LastTimestamp.Time, e.EventTime.Time)
		if e.Series != nil {
			latest(e.Series.LastObservedTime.Time)
		}
	case *eventsv1.Event:
		msg = e.Note
		f["reason"], f["type"] = e.Reason, e.Type
		objKind, objName = e.Regarding.Kind, e.Regarding.Name
		f["source"] = e.ReportingController
		node = e.DeprecatedSource.Host
		latest(e.CreationTimestamp.Time, e.EventTime.Time, e.DeprecatedLastTimestamp.Time)
		if e.Series != nil {
			latest(e.Series.LastObservedTime.Time)
		}
	default:
		return logrecord.Record{}, false
	}
	if objKind != "" {
		f["object"] = objKind + "/" + objName
	}
	if objKind == "Pod" {
		f[logrecord.FieldPod] = objName
	}
	if node != "" {
		f[logrecord.FieldNode] = node
	}
	for k, v := range f {
		if v == "" {
			delete(f, k)
		}
	}
	if t.IsZero() {
		t = time.Now()
	}
	return logrecord.Record{Source: "event/" + o.UID, Offset: int64(o.ModifyIndex), Time: t, Msg: msg, Fields: f}, true
}
