package chaos

import (
	"fmt"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// FormatReport prints one row of figures per nemesis.
func FormatReport(rs []*Result, took time.Duration, cfg Config) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nSkiff chaos suite: %s, %s of load per nemesis, %d CPUs, seed %d, %s\n\n",
		cfg.Mode, cfg.Duration, runtime.NumCPU(), cfg.Seed, took.Truncate(time.Second))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "nemesis\tmasters\tfaults\tops\tok\tunknown\tlin. violations\tlost acked\tstale reads (probes)\twatch anomalies\tdivergent\tcrashes\tunavail p50\tunavail p99\tkills\t410/relists\tsnapshots\t")
	for _, r := range rs {
		snaps := "-"
		if r.Faults.SnapshotInstalls+r.Faults.KilledDuringSnapshot > 0 {
			snaps = fmt.Sprintf("%d inst, %d mid", r.Faults.SnapshotInstalls, r.Faults.KilledDuringSnapshot)
		}
		if r.Faults.Corruptions > 0 {
			snaps = fmt.Sprintf("%d corrupt, %d repaired", r.Faults.Corruptions, r.Faults.Repairs)
		}
		lin := fmt.Sprint(r.Lin.Violations)
		if r.Lin.Undecided {
			lin += "?"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%d (%d)\t%d\t%d\t%d\t%s\t%s\t%d\t%d/%d\t%s\t\n",
			r.Nemesis, r.Masters, r.Faults.Count, r.Ops, r.OpsOK, r.OpsUnknown, lin, r.Lost(), r.Stale, r.Faults.StaleProbes,
			r.Watch.Anomalies(), r.Divergent, r.Crashes, fmtDur(Percentile(r.Unavail, 0.5), len(r.Unavail)),
			fmtDur(Percentile(r.Unavail, 0.99), len(r.Unavail)), len(r.Unavail), r.Watch.Expired, r.Watch.Relists, snaps)
	}
	tw.Flush()
	b.WriteString("\nops: register reads/writes/CAS, set creates and counter increments recorded (a failed read is not recorded);\n" +
		"unknown: 504/503/transport error after sending; unavail: from taking the leader away to the first acknowledged\n" +
		"write invoked after it; kills: leader disruptions measured; 410/relists: watch resumes that expired and relists;\n" +
		"probes: targeted default GETs of a cut-off or just-resumed old leader after a newer write elsewhere;\n" +
		"crashes: panics, fatal errors and data races (with a -race binary) in the masters' logs.\n")
	return b.String()
}

func fmtDur(d time.Duration, n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}
