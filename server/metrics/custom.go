package metrics

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// CustomMetrics answers custom.metrics.k8s.io and external.metrics.k8s.io
// from the store with PromQL (docs/monitoring.md):
//
//   - a pods metric M of pods P1..Pn in namespace NS is
//     sum by (pod) (M{namespace="NS",pod=~"P1|...|Pn",<metric selector>}),
//     with irate(M[4 scrape intervals]) for a counter (a name ending in
//     _total): the rate between its two latest samples, as metrics.k8s.io
//     computes CPU;
//   - an object metric M of kind K named N is
//     sum(M{namespace="NS",k="N",<metric selector>}) with k the lower-case
//     kind (service, deployment...; no such label for a Namespace);
//   - an external metric M is the rule named M (Rules), or else the series
//     M itself, with the request's label selector added as matchers to
//     every series selector of the expression and $namespace replaced by
//     the request's namespace; each resulting series is one value.
type CustomMetrics struct {
	api *API
	// window is the range of irate() for counters.
	window time.Duration
	now    func() time.Time
}

// Value is one answer: the series' labels, its value and sample time.
type Value struct {
	Labels    map[string]string
	Value     float64
	Timestamp time.Time
}

// NewCustomMetrics answers over api's store, scraped every interval.
func NewCustomMetrics(api *API, interval time.Duration) *CustomMetrics {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	return &CustomMetrics{api: api, window: 4 * interval, now: time.Now}
}

// Window is the range counters are rated over.
func (c *CustomMetrics) Window() time.Duration { return c.window }

var metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)

// series renders M{matchers} (rated for a counter).
func (c *CustomMetrics) series(metric string, ms []*labels.Matcher) (string, error) {
	if !metricName.MatchString(metric) {
		return "", fmt.Errorf("%q is not a metric name", metric)
	}
	vs := &parser.VectorSelector{Name: metric, LabelMatchers: append([]*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, metric)}, ms...)}
	if strings.HasSuffix(metric, "_total") {
		return fmt.Sprintf("irate(%s[%s])", vs.String(), durationString(c.window)), nil
	}
	return vs.String(), nil
}

func durationString(d time.Duration) string { return fmt.Sprintf("%dms", d.Milliseconds()) }

// PodValues is metric for the named pods of namespace, by pod name: the
// series named metric, or rule (a PromQL expression, $namespace replaced)
// when not empty, with the namespace, pod and metricSelector matchers
// added to every series selector and summed by pod.
func (c *CustomMetrics) PodValues(ctx context.Context, namespace string, pods []string, metric, rule string, metricSelector k8slabels.Selector) (map[string]Value, error) {
	if len(pods) == 0 {
		return nil, nil
	}
	ms, err := Matchers(metricSelector)
	if err != nil {
		return nil, err
	}
	quoted := make([]string, len(pods))
	for i, p := range pods {
		quoted[i] = regexp.QuoteMeta(p)
	}
	ms = append(ms, labels.MustNewMatcher(labels.MatchEqual, "namespace", namespace),
		labels.MustNewMatcher(labels.MatchRegexp, "pod", strings.Join(quoted, "|")))
	var s string
	if rule == "" {
		if s, err = c.series(metric, ms); err != nil {
			return nil, err
		}
	} else {
		expr, err := c.api.parser.ParseExpr(strings.ReplaceAll(rule, "$namespace", namespace))
		if err != nil {
			return nil, fmt.Errorf("rule of pods metric %q: %w", metric, err)
		}
		addMatchers(expr, ms)
		s = expr.String()
	}
	vals, err := c.eval(ctx, "sum by (pod) ("+s+")")
	if err != nil {
		return nil, err
	}
	out := make(map[string]Value, len(vals))
	for _, v := range vals {
		out[v.Labels["pod"]] = v
	}
	return out, nil
}

// ObjectValue is metric of one object.
func (c *CustomMetrics) ObjectValue(ctx context.Context, namespace, kind, name, metric string, metricSelector k8slabels.Selector) (*Value, error) {
	ms, err := Matchers(metricSelector)
	if err != nil {
		return nil, err
	}
	if namespace != "" {
		ms = append(ms, labels.MustNewMatcher(labels.MatchEqual, "namespace", namespace))
	}
	if k := strings.ToLower(kind); k != "namespace" {
		ms = append(ms, labels.MustNewMatcher(labels.MatchEqual, k, name))
	} else {
		ms = append(ms, labels.MustNewMatcher(labels.MatchEqual, "namespace", name))
	}
	s, err := c.series(metric, ms)
	if err != nil {
		return nil, err
	}
	vals, err := c.eval(ctx, "sum("+s+")")
	if err != nil {
		return nil, err
	}
	if len(vals) == 0 {
		return nil, nil
	}
	return &vals[0], nil
}

// ExternalValues evaluates an external metric: rule (empty: the series
// named metric) with selector's matchers added and $namespace replaced.
func (c *CustomMetrics) ExternalValues(ctx context.Context, namespace, metric, rule string, selector k8slabels.Selector) ([]Value, error) {
	if rule == "" {
		if !metricName.MatchString(metric) {
			return nil, fmt.Errorf("no rule for external metric %q and it is not a series name", metric)
		}
		rule = metric
	}
	expr, err := c.api.parser.ParseExpr(strings.ReplaceAll(rule, "$namespace", namespace))
	if err != nil {
		return nil, fmt.Errorf("rule of external metric %q: %w", metric, err)
	}
	ms, err := Matchers(selector)
	if err != nil {
		return nil, err
	}
	addMatchers(expr, ms)
	return c.eval(ctx, expr.String())
}

// addMatchers adds ms to every series selector of expr.
func addMatchers(expr parser.Expr, ms []*labels.Matcher) {
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			vs.LabelMatchers = append(vs.LabelMatchers, ms...)
		}
		return nil
	})
}

func (c *CustomMetrics) eval(ctx context.Context, expr string) ([]Value, error) {
	vec, err := c.api.Instant(ctx, expr, c.now())
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", expr, err)
	}
	out := make([]Value, 0, len(vec))
	for _, s := range vec {
		if math.IsNaN(s.F) || math.IsInf(s.F, 0) {
			continue
		}
		out = append(out, Value{Labels: s.Metric.Map(), Value: s.F, Timestamp: time.UnixMilli(s.T)})
	}
	return out, nil
}

// Quantity renders a sample value as a Kubernetes quantity (milli
// precision, as the metrics APIs carry).
func Quantity(f float64) resource.Quantity {
	return *resource.NewMilliQuantity(int64(math.Round(f*1000)), resource.DecimalSI)
}

// Time renders a sample time.
func Time(t time.Time) metav1.Time { return metav1.NewTime(t) }

// Matchers turns a Kubernetes label selector into PromQL matchers.
func Matchers(sel k8slabels.Selector) ([]*labels.Matcher, error) {
	if sel == nil {
		return nil, nil
	}
	reqs, _ := sel.Requirements()
	var out []*labels.Matcher
	for _, r := range reqs {
		vals := r.Values().UnsortedList()
		quoted := make([]string, len(vals))
		for i, v := range vals {
			quoted[i] = regexp.QuoteMeta(v)
		}
		var m *labels.Matcher
		var err error
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals:
			m, err = labels.NewMatcher(labels.MatchEqual, r.Key(), vals[0])
		case selection.NotEquals:
			m, err = labels.NewMatcher(labels.MatchNotEqual, r.Key(), vals[0])
		case selection.In:
			m, err = labels.NewMatcher(labels.MatchRegexp, r.Key(), strings.Join(quoted, "|"))
		case selection.NotIn:
			m, err = labels.NewMatcher(labels.MatchNotRegexp, r.Key(), strings.Join(quoted, "|"))
		case selection.Exists:
			m, err = labels.NewMatcher(labels.MatchNotEqual, r.Key(), "")
		case selection.DoesNotExist:
			m, err = labels.NewMatcher(labels.MatchEqual, r.Key(), "")
		default:
			return nil, fmt.Errorf("label selector operator %q has no PromQL matcher", r.Operator())
		}
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}
