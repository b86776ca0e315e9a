// Command summary reads the JUnit report e2e.test writes (junit_01.xml) and
// prints `N passed, M failed, K skipped` for the specs a run selected, then
// the failures grouped by cause: first those that need an image that cannot
// be built here, then by the first line of the failure message (with
// generated names and numbers blanked) and by SIG. See docs/CONFORMANCE.md.
package main

import (
	"encoding/xml"
	"flag"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
)

type testsuites struct {
	Suites []struct {
		Cases []testcase `xml:"testcase"`
	} `xml:"testsuite"`
}

type testcase struct {
	Name    string `xml:"name,attr"`
	Status  string `xml:"status,attr"`
	Time    string `xml:"time,attr"`
	Failure *struct {
		Body string `xml:",chardata"`
	} `xml:"failure"`
	Error *struct {
		Body string `xml:",chardata"`
	} `xml:"error"`
	Skipped *struct {
		Message string `xml:"message,attr"`
	} `xml:"skipped"`
	SystemOut string `xml:"system-out"`
	SystemErr string `xml:"system-err"`
}

var (
	sigRE = regexp.MustCompile(`\[sig-[a-z-]+\]`)
	// Blanked in a failure's first line so that one cause groups together:
	// generated namespace and object names, addresses, numbers.
	blanks = []struct {
		re   *regexp.Regexp
		with string
	}{
		{regexp.MustCompile(`\b[a-z0-9]+(-[a-z0-9]+)*-[a-z0-9]{5}\b`), "NAME"},
		{regexp.MustCompile(`\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b`), "UID"},
		{regexp.MustCompile(`\b\d+\.\d+\.\d+\.\d+(:\d+)?\b`), "ADDR"},
		{regexp.MustCompile(`\b\d+(\.\d+)?(ms|s|m|h)?\b`), "N"},
	}
	pullRE = regexp.MustCompile(`(?i)(ErrImagePull|ImagePullBackOff|ErrImageNeverPull|pull image|pulling image)`)
)

func main() {
	focus := flag.String("focus", `\[Conformance\]`, "regexp of the spec names the run selected")
	skip := flag.String("skip", `\[Serial\]|\[Disruptive\]`, "regexp of the spec names the run left out")
	unbuildable := flag.String("unbuildable", "", "comma-separated image names the suite uses that were not built")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: summary [-focus RE] [-skip RE] [-unbuildable LIST] junit_01.xml")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *focus, *skip, *unbuildable); err != nil {
		fmt.Fprintln(os.Stderr, "summary:", err)
		os.Exit(1)
	}
}

type failure struct {
	name, cause, sig string
}

func run(path, focus, skip, unbuildable string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var ts testsuites
	if err := xml.Unmarshal(b, &ts); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	fre, err := regexp.Compile(focus)
	if err != nil {
		return err
	}
	var sre *regexp.Regexp
	if skip != "" {
		if sre, err = regexp.Compile(skip); err != nil {
			return err
		}
	}
	var images []string
	for _, s := range strings.Split(unbuildable, ",") {
		if s = strings.TrimSpace(s); s != "" {
			images = append(images, s)
		}
	}
	var passed, skipped, notRun int
	var failed []failure
	var suiteFailures []string
	for _, s := range ts.Suites {
		for _, c := range s.Cases {
			if !strings.HasPrefix(c.Name, "[It] ") {
				// Suite nodes (BeforeSuite, ReportAfterSuite): only failures matter.
				if c.Status != "passed" && c.Status != "skipped" {
					suiteFailures = append(suiteFailures, c.Name+": "+firstLine(body(c)))
				}
				continue
			}
			name := strings.TrimPrefix(c.Name, "[It] ")
			if !fre.MatchString(name) || (sre != nil && sre.MatchString(name)) {
				continue
			}
			switch c.Status {
			case "passed":
				passed++
			case "skipped", "pending":
				// A spec ginkgo never started (the run was interrupted, or
				// another focus) says just "skipped"; one the suite skipped
				// itself says why.
				if c.Skipped != nil && c.Skipped.Message == "skipped" {
					notRun++
				} else {
					skipped++
				}
			default:
				failed = append(failed, failure{name: name, cause: cause(c, images), sig: sig(name)})
			}
		}
	}
	fmt.Printf("%d passed, %d failed, %d skipped", passed, len(failed), skipped)
	if notRun > 0 {
		fmt.Printf(", %d not run (interrupted)", notRun)
	}
	fmt.Printf(" (of %d selected specs)\n", passed+len(failed)+skipped+notRun)
	for _, f := range suiteFailures {
		fmt.Printf("suite failure: %s\n", f)
	}
	if len(failed) == 0 {
		return nil
	}

	bySig := map[string]int{}
	for _, f := range failed {
		bySig[f.sig]++
	}
	fmt.Printf("\nfailures by SIG:")
	for _, k := range sortedKeys(bySig) {
		fmt.Printf(" %s %d;", k, bySig[k])
	}
	fmt.Println()

	byCause := map[string][]failure{}
	for _, f := range failed {
		byCause[f.cause] = append(byCause[f.cause], f)
	}
	causes := sortedKeys(byCause)
	sort.SliceStable(causes, func(i, j int) bool { return len(byCause[causes[i]]) > len(byCause[causes[j]]) })
	fmt.Printf("\nfailures by cause (%d causes):\n", len(causes))
	for _, k := range causes {
		fmt.Printf("\n%d × %s\n", len(byCause[k]), k)
		fs := byCause[k]
		sort.Slice(fs, func(i, j int) bool { return fs[i].name < fs[j].name })
		for _, f := range fs {
			fmt.Printf("    %s\n", f.name)
		}
	}
	return nil
}

func body(c testcase) string {
	switch {
	case c.Failure != nil:
		return c.Failure.Body
	case c.Error != nil:
		return c.Error.Body
	}
	return c.Status
}

// cause names a failure's cause: an image not built here if the spec's
// output shows a pull of one, else the failure's first line, blanked.
func cause(c testcase, images []string) string {
	out := body(c) + "\n" + c.SystemOut + "\n" + c.SystemErr
	var need []string
	for _, line := range strings.Split(out, "\n") {
		if !pullRE.MatchString(line) {
			continue
		}
		for _, img := range images {
			if strings.Contains(line, img) && !contains(need, img) {
				need = append(need, img)
			}
		}
	}
	if len(need) > 0 {
		sort.Strings(need)
		return "needs an unbuildable image: " + strings.Join(need, ", ")
	}
	line := firstLine(body(c))
	for _, b := range blanks {
		line = b.re.ReplaceAllString(line, b.with)
	}
	return "[" + c.Status + "] " + line
}

// firstLine is the start of a failure message: its first line, with the
// next ones joined while it is short (gomega's "Expected" and "Unexpected
// error:" say nothing alone).
func firstLine(s string) string {
	var parts []string
	n := 0
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		for _, p := range []string{"[FAILED]", "[PANICKED]", "[TIMEDOUT]"} {
			l = strings.TrimSpace(strings.TrimPrefix(l, p))
		}
		if l == "" || strings.HasPrefix(l, "In [") {
			continue
		}
		parts = append(parts, l)
		n += len(l)
		if n >= 40 || len(parts) == 4 {
			break
		}
	}
	if len(parts) == 0 {
		return "(no message)"
	}
	out := strings.Join(parts, " ")
	if len(out) > 200 {
		out = out[:200] + "…"
	}
	return out
}

func sig(name string) string {
	if m := sigRE.FindString(name); m != "" {
		return m
	}
	return "[no sig]"
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
