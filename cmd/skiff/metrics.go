package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/skiff-io/skiff/client"
)

func newMetricsCommand() *cobra.Command {
	var kubeconfig string
	cmd := &cobra.Command{
		Use:   "metrics",
		Short: "Query the masters' metrics store (docs/monitoring.md)",
	}
	cmd.PersistentFlags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig (default $KUBECONFIG, then "+client.DefaultKubeconfig+"); its user needs get on /prometheus/*")
	var (
		rng, step time.Duration
		at        string
		spark     string
	)
	query := &cobra.Command{
		Use:   "query PROMQL",
		Short: "Evaluate a PromQL expression now (or over --range) and print a table",
		Example: `  skiff metrics query 'up'
  skiff metrics query 'sum by (pod) (rate(container_cpu_usage_seconds_total{job="resource"}[1m]))' --range 1h --step 30s`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := client.NewMaster(client.KubeconfigPath(kubeconfig))
			if err != nil {
				return err
			}
			c, err := promapi.NewClient(promapi.Config{Address: m.Host + "/prometheus", Client: m.HTTP})
			if err != nil {
				return err
			}
			api := promv1.NewAPI(c)
			ctx, cancel := context.WithTimeout(cmd.Context(), 3*time.Minute)
			defer cancel()
			end := time.Now()
			if at != "" {
				if end, err = parseCLITime(at); err != nil {
					return fmt.Errorf("--time: %w", err)
				}
			}
			var (
				v        model.Value
				warnings promv1.Warnings
			)
			if rng > 0 {
				if step <= 0 {
					step = max(rng/60, time.Second).Round(time.Second)
				}
				v, warnings, _, err = api.QueryRange(ctx, args[0], promv1.Range{Start: end.Add(-rng), End: end, Step: step})
			} else {
				v, warnings, _, err = api.Query(ctx, args[0], end)
			}
			if err != nil {
				return err
			}
			for _, w := range warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
			}
			withSpark := spark == "always" || (spark == "auto" && isTerminal(cmd.OutOrStdout()))
			return printValue(cmd.OutOrStdout(), v, withSpark)
		},
	}
	query.Flags().DurationVar(&rng, "range", 0, "evaluate over this long up to --time (a range query) instead of at one instant")
	query.Flags().DurationVar(&step, "step", 0, "resolution of a range query (default: the range / 60)")
	query.Flags().StringVar(&at, "time", "", "evaluation time (RFC 3339 or Unix seconds; default now)")
	query.Flags().StringVar(&spark, "sparkline", "auto", "draw a sparkline per series of a range query: auto (in a terminal), always, never")
	cmd.AddCommand(query)
	return cmd
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func parseCLITime(s string) (time.Time, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)), nil
	}
	return time.Parse(time.RFC3339, s)
}

// printValue prints a query's result as a table: one row per series (its
// labels, then its value, or for a range its last, min and max and, with
// spark, a sparkline).
func printValue(w io.Writer, v model.Value, spark bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	switch v := v.(type) {
	case model.Vector:
		sort.Slice(v, func(i, j int) bool { return v[i].Metric.String() < v[j].Metric.String() })
		fmt.Fprintln(tw, "SERIES\tVALUE")
		for _, s := range v {
			fmt.Fprintf(tw, "%s\t%s\n", seriesName(s.Metric), formatValue(float64(s.Value)))
		}
	case model.Matrix:
		sort.Slice(v, func(i, j int) bool { return v[i].Metric.String() < v[j].Metric.String() })
		header := "SERIES\tLAST\tMIN\tMAX\tPOINTS"
		if spark {
			header += "\t"
		}
		fmt.Fprintln(tw, header)
		for _, s := range v {
			if len(s.Values) == 0 {
				continue
			}
			lo, hi := math.Inf(1), math.Inf(-1)
			vals := make([]float64, len(s.Values))
			for i, p := range s.Values {
				vals[i] = float64(p.Value)
				lo, hi = math.Min(lo, vals[i]), math.Max(hi, vals[i])
			}
			row := fmt.Sprintf("%s\t%s\t%s\t%s\t%d", seriesName(s.Metric), formatValue(vals[len(vals)-1]), formatValue(lo), formatValue(hi), len(vals))
			if spark {
				row += "\t" + sparkline(vals)
			}
			fmt.Fprintln(tw, row)
		}
	case *model.Scalar:
		fmt.Fprintln(tw, formatValue(float64(v.Value)))
	case *model.String:
		fmt.Fprintln(tw, v.Value)
	default:
		return errors.New("unexpected result type " + v.Type().String())
	}
	return tw.Flush()
}

func seriesName(m model.Metric) string {
	if len(m) == 0 {
		return "{}"
	}
	return m.String()
}

func formatValue(f float64) string { return strconv.FormatFloat(f, 'g', 6, 64) }

// sparkline draws values with the eight block characters, lowest to
// highest (a flat series is drawn at the bottom).
func sparkline(vals []float64) string {
	const bars = "▁▂▃▄▅▆▇█"
	runes := []rune(bars)
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range vals {
		if !math.IsNaN(v) {
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	var b strings.Builder
	for _, v := range vals {
		switch {
		case math.IsNaN(v):
			b.WriteRune(' ')
		case hi == lo:
			b.WriteRune(runes[0])
		default:
			b.WriteRune(runes[int(math.Round((v-lo)/(hi-lo)*float64(len(runes)-1)))])
		}
	}
	return b.String()
}
