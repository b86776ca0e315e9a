package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/client"
)

// logRecord is one record as the log query API answers it.
type logRecord struct {
	Time   time.Time         `json:"time"`
	Msg    string            `json:"msg"`
	Fields map[string]string `json:"fields"`
}

func newLogsCommand() *cobra.Command {
	var kubeconfig string
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Search the masters' log store (docs/logging.md)",
	}
	cmd.PersistentFlags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig (default $KUBECONFIG, then "+client.DefaultKubeconfig+"); its user needs get pods/log in the namespaces searched")
	var (
		namespace, pod, container, node, kind, since, output string
		follow                                               bool
		limit                                                int
	)
	search := &cobra.Command{
		Use:   "search [LOGSQL]",
		Short: "Print the newest records matching a LogsQL query (oldest first), and with --follow those that arrive",
		Example: `  skiff logs search error -n shop --since 1h
  skiff logs search '"connection refused"' --pod web-0 --follow
  skiff logs search 'status:>=500' -n shop -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := client.NewMaster(client.KubeconfigPath(kubeconfig))
			if err != nil {
				return err
			}
			v := url.Values{}
			if len(args) == 1 {
				v.Set("query", args[0])
			}
			for k, val := range map[string]string{"namespace": namespace, "pod": pod, "container": container,
				"node": node, "kind": kind, "since": since} {
				if val != "" {
					v.Set(k, val)
				}
			}
			if limit > 0 {
				v.Set("limit", strconv.Itoa(limit))
			}
			var print func(logRecord) error
			out := cmd.OutOrStdout()
			switch output {
			case "json":
				enc := json.NewEncoder(out)
				print = func(r logRecord) error { return enc.Encode(r) }
			case "", "text":
				print = func(r logRecord) error { _, err := fmt.Fprintln(out, formatLogRecord(r)); return err }
			default:
				return fmt.Errorf("--output %q: want text or json", output)
			}
			ctx := cmd.Context()
			recs, err := logsGet(ctx, m, "/logs/v1/query?"+v.Encode())
			if err != nil {
				return err
			}
			slices.Reverse(recs)
			for _, r := range recs {
				if err := print(r); err != nil {
					return err
				}
			}
			if !follow {
				return nil
			}
			v.Del("since")
			v.Del("limit")
			return logsTail(ctx, m, "/logs/v1/tail?"+v.Encode(), print)
		},
	}
	f := search.Flags()
	f.StringVarP(&namespace, "namespace", "n", "", "only this namespace's records (default: every namespace you may read)")
	f.StringVar(&pod, "pod", "", "only this pod's records")
	f.StringVarP(&container, "container", "c", "", "only this container's records")
	f.StringVar(&node, "node", "", "only this node's records")
	f.StringVar(&kind, "kind", "", "only records of this kind: container, agent, server or event")
	f.StringVar(&since, "since", "", "only records of the last duration (5m, 1h, 7d)")
	f.BoolVarP(&follow, "follow", "f", false, "after the page, print matching records as they arrive")
	f.IntVar(&limit, "limit", 100, "most records in the page (the server's bound is 10000)")
	f.StringVarP(&output, "output", "o", "", "output: text (TIME NAMESPACE/POD CONTAINER MSG) or json (one record per line)")
	cmd.AddCommand(search)
	return cmd
}

// formatLogRecord: TIME NAMESPACE/POD CONTAINER MSG; records of no pod
// show KIND/NODE (agent, server) or the Event's object.
func formatLogRecord(r logRecord) string {
	f := r.Fields
	who := f["namespace"] + "/" + f["pod"]
	what := f["container"]
	switch f["kind"] {
	case "agent", "server":
		who, what = f["kind"]+"/"+f["node"], f["stream"]
	case "event":
		who, what = f["namespace"]+"/"+f["object"], f["reason"]
	}
	if what == "" {
		what = "-"
	}
	return fmt.Sprintf("%s %s %s %s", r.Time.Local().Format(time.RFC3339Nano), who, what, r.Msg)
}

func logsRequest(ctx context.Context, m *client.Master, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.Host+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := m.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var st metav1.Status
		if json.Unmarshal(body, &st) == nil && st.Message != "" {
			return nil, fmt.Errorf("%s: %s", resp.Status, st.Message)
		}
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return resp, nil
}

func logsGet(ctx context.Context, m *client.Master, path string) ([]logRecord, error) {
	resp, err := logsRequest(ctx, m, path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []logRecord
	dec := json.NewDecoder(resp.Body)
	for {
		var r logRecord
		if err := dec.Decode(&r); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("read the answer: %w", err)
		}
		out = append(out, r)
	}
}

func logsTail(ctx context.Context, m *client.Master, path string, print func(logRecord) error) error {
	resp, err := logsRequest(ctx, m, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var r logRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return fmt.Errorf("read the stream: %w", err)
		}
		if err := print(r); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}
