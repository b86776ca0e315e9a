package metrics

import (
	"net/http"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// federationLookback is how far back /federate looks for a series' latest
// sample: PromQL's lookback delta, as Prometheus' /federate.
const federationLookback = 5 * time.Minute

// federate answers GET /federate?match[]=SELECTOR...: the latest sample
// (within the lookback) of every series any selector matches, in the
// exposition format the client accepts (text unless it asks for
// protobuf), each with its timestamp, as Prometheus' /federate. A scraping
// Prometheus keeps the labels with honor_labels: true.
func (a *API) federate(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, errorBadData, "parse form: "+err.Error())
		return
	}
	var matchers [][]*labels.Matcher
	for _, s := range r.Form["match[]"] {
		ms, err := a.parser.ParseMetricSelector(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, errorBadData, err.Error())
			return
		}
		matchers = append(matchers, ms)
	}
	if len(matchers) == 0 {
		writeError(w, http.StatusBadRequest, errorBadData, "no match[] parameter given")
		return
	}
	now := time.Now()
	maxt := now.UnixMilli()
	mint := now.Add(-federationLookback).UnixMilli()
	q, err := a.store.Queryable().Querier(mint, maxt)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, errorUnavailable, err.Error())
		return
	}
	defer q.Close()
	hints := &storage.SelectHints{Start: mint, End: maxt}
	sets := make([]storage.SeriesSet, 0, len(matchers))
	for _, ms := range matchers {
		sets = append(sets, q.Select(r.Context(), true, hints, ms...))
	}
	set := storage.NewMergeSeriesSet(sets, 0, storage.ChainedSeriesMerge)
	type point struct {
		lset labels.Labels
		t    int64
		v    float64
	}
	var points []point
	var it chunkenc.Iterator
	for set.Next() {
		s := set.At()
		it = s.Iterator(it)
		var (
			t  int64
			v  float64
			ok bool
		)
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			if vt != chunkenc.ValFloat {
				continue // the scraper stores no native histograms
			}
			t, v = it.At()
			ok = true
		}
		if it.Err() != nil || !ok || value.IsStaleNaN(v) {
			continue
		}
		lset := s.Labels()
		if len(a.external) > 0 {
			b := labels.NewBuilder(lset)
			for k, v := range a.external {
				if !lset.Has(k) {
					b.Set(k, v)
				}
			}
			lset = b.Labels()
		}
		points = append(points, point{lset, t, v})
	}
	if err := set.Err(); err != nil {
		writeError(w, http.StatusInternalServerError, errorInternal, err.Error())
		return
	}
	slices.SortFunc(points, func(x, y point) int {
		if c := strings.Compare(x.lset.Get(labels.MetricName), y.lset.Get(labels.MetricName)); c != 0 {
			return c
		}
		return labels.Compare(x.lset, y.lset)
	})
	format := expfmt.Negotiate(r.Header)
	w.Header().Set("Content-Type", string(format))
	enc := expfmt.NewEncoder(w, format)
	var fam *dto.MetricFamily
	flush := func() bool {
		if fam == nil {
			return true
		}
		if err := enc.Encode(fam); err != nil {
			a.log.Debug("federate: write", "err", err)
			return false
		}
		return true
	}
	for _, p := range points {
		name := p.lset.Get(labels.MetricName)
		if fam == nil || fam.GetName() != name {
			if !flush() {
				return
			}
			fam = &dto.MetricFamily{Name: &name, Type: dto.MetricType_UNTYPED.Enum()}
		}
		m := &dto.Metric{Untyped: &dto.Untyped{Value: &p.v}, TimestampMs: &p.t}
		p.lset.Range(func(l labels.Label) {
			if l.Name == labels.MetricName {
				return
			}
			m.Label = append(m.Label, &dto.LabelPair{Name: &l.Name, Value: &l.Value})
		})
		fam.Metric = append(fam.Metric, m)
	}
	flush()
	if c, ok := enc.(expfmt.Closer); ok {
		_ = c.Close()
	}
}
