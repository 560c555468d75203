package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lastcall-dev/lastcall/internal/observer/summary"
)

// rawGetter GETs an API server path (as `kubectl get --raw` does) and returns the body.
type rawGetter func(ctx context.Context, path string) ([]byte, error)

// kubectlRaw reaches the API server through kubectl, which already handles every kubeconfig form (exec
// credential plugins, OIDC, client certificates, contexts): the CLI itself links no Kubernetes client, so the
// offline commands stay small (internal/layering holds it to that).
func kubectlRaw(kubectl, kubeconfig, kubeContext string) rawGetter {
	return func(ctx context.Context, path string) ([]byte, error) {
		args := []string{}
		if kubeconfig != "" {
			args = append(args, "--kubeconfig", kubeconfig)
		}
		if kubeContext != "" {
			args = append(args, "--context", kubeContext)
		}
		return runKubectl(ctx, kubectl, append(args, "get", "--raw", path))
	}
}

// runKubectl runs kubectl and returns its stdout; an error carries kubectl's own message.
func runKubectl(ctx context.Context, kubectl string, args []string) ([]byte, error) {
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, kubectl, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = err.Error()
		}
		shown := args
		for i, a := range args {
			if a == "get" || a == "version" {
				shown = args[i:]
				break
			}
		}
		return nil, fmt.Errorf("kubectl %s: %s", strings.Join(shown, " "), msg)
	}
	return out.Bytes(), nil
}

// statusOptions locate the observer.
type statusOptions struct {
	namespace        string // only workloads in this namespace ("" = all)
	lastcallNS       string
	release          string
	metricsPort      int
	format           string
	timeout          time.Duration
	kubectl          string
	kubeconfig, kctx string
}

const statusUsage = `lastcall status: how the shutdowns of lastcall-managed workloads went recently (from lastcall's observer).

Usage:
  lastcall status [-n NAMESPACE] [--kubeconfig FILE] [--context NAME] [-o text|json]

  -n, --namespace NAME       only workloads in this namespace (default: all)
  --lastcall-namespace NAME  where lastcall is installed (default lastcall-system)
  --release NAME             the chart's full name (the release name, or <release>-lastcall when the release
                             name does not contain "lastcall"; default lastcall): Lease <NAME>-observer,
                             Service <NAME>-metrics
  --kubeconfig FILE, --context NAME   as for kubectl (status runs kubectl get --raw)

It asks the replica that holds the observer's Lease, through the API server's pod proxy, and falls back to the
metrics Service's proxy. RBAC needed in the lastcall namespace: get on leases, and get on pods/proxy (or
services/proxy).
`

func runStatus(args []string, stdout, stderr io.Writer) int {
	o := statusOptions{}
	fs := newFlagSet("status", stderr)
	fs.StringVar(&o.namespace, "n", "", "only workloads in this namespace")
	fs.StringVar(&o.namespace, "namespace", "", "same as -n")
	fs.StringVar(&o.lastcallNS, "lastcall-namespace", "lastcall-system", "namespace lastcall is installed in")
	fs.StringVar(&o.release, "release", "lastcall", "the chart's full name (the Helm release name when it contains \"lastcall\")")
	fs.IntVar(&o.metricsPort, "metrics-port", 8080, "the webhook pods' metrics port")
	fs.StringVar(&o.format, "o", "text", "output format: text or json")
	fs.StringVar(&o.format, "output", "text", "same as -o")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (as kubectl)")
	fs.StringVar(&o.kctx, "context", "", "kubeconfig context (as kubectl)")
	fs.StringVar(&o.kubectl, "kubectl", "kubectl", "the kubectl binary")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "give up after this long")
	help := fs.Bool("h", false, "help")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return ExitBadInput
	}
	if *help {
		fmt.Fprint(stdout, statusUsage)
		return ExitOK
	}
	if len(rest) > 0 {
		return badInput(stderr, fmt.Errorf("status: unexpected arguments %q", rest))
	}
	if o.format != "text" && o.format != "json" {
		return badInput(stderr, fmt.Errorf("-o %q: must be text or json", o.format))
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	rep, err := fetchStatus(ctx, kubectlRaw(o.kubectl, o.kubeconfig, o.kctx), o)
	if err != nil {
		fmt.Fprintf(stderr, "lastcall: error: %v\n", err)
		return ExitFindings
	}
	return printStatus(stdout, stderr, rep, o)
}

// fetchStatus reads the observer's report from the replica holding its Lease.
func fetchStatus(ctx context.Context, get rawGetter, o statusOptions) (summary.Report, error) {
	var errs []error
	lease := o.release + "-observer"
	body, err := get(ctx, "/apis/coordination.k8s.io/v1/namespaces/"+o.lastcallNS+"/leases/"+lease)
	if err == nil {
		var l struct {
			Spec struct {
				HolderIdentity string `json:"holderIdentity"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(body, &l); err != nil {
			errs = append(errs, fmt.Errorf("lease %s/%s: %w", o.lastcallNS, lease, err))
		} else if pod := summary.HolderPod(l.Spec.HolderIdentity); pod != "" {
			rep, err := readReport(ctx, get, "/api/v1/namespaces/"+o.lastcallNS+"/pods/"+pod+":"+strconv.Itoa(o.metricsPort)+"/proxy/shutdowns")
			if err == nil && rep.Leader {
				return rep, nil
			}
			if err == nil {
				err = fmt.Errorf("pod %s holds the Lease but does not observe (yet)", pod)
			}
			errs = append(errs, err)
		} else {
			errs = append(errs, fmt.Errorf("lease %s/%s has no holder: no replica observes (observer.enabled false?)", o.lastcallNS, lease))
		}
	} else {
		errs = append(errs, err)
	}
	// Any replica through the Service: right when it lands on the leader; a few tries.
	svc := "/api/v1/namespaces/" + o.lastcallNS + "/services/" + o.release + "-metrics:metrics/proxy/shutdowns"
	for range 4 {
		rep, err := readReport(ctx, get, svc)
		if err == nil && rep.Leader {
			return rep, nil
		}
		if err != nil {
			errs = append(errs, err)
			break
		}
	}
	return summary.Report{}, fmt.Errorf("cannot reach lastcall's observer: %w", errors.Join(errs...))
}

func readReport(ctx context.Context, get rawGetter, path string) (summary.Report, error) {
	body, err := get(ctx, path)
	if err != nil {
		return summary.Report{}, err
	}
	var r summary.Report
	if err := json.Unmarshal(body, &r); err != nil {
		return summary.Report{}, fmt.Errorf("%s: not an observer report: %w", path, err)
	}
	return r, nil
}

// StatusRow is one workload container in `lastcall status -o json`: the observer's summary and the verdict.
type StatusRow struct {
	summary.Workload
	Verdict string `json:"verdict"`
}

func printStatus(stdout, stderr io.Writer, rep summary.Report, o statusOptions) int {
	rows := []StatusRow{}
	for _, w := range rep.Workloads {
		if o.namespace != "" && w.Namespace != o.namespace {
			continue
		}
		rows = append(rows, StatusRow{Workload: w, Verdict: summary.Verdict(w)})
	}
	if o.format == "json" {
		return writeJSON(stdout, stderr, struct {
			Window    string      `json:"window"`
			Workloads []StatusRow `json:"workloads"`
		}{rep.Window, rows})
	}
	if len(rows) == 0 {
		fmt.Fprintf(stdout, "no shutdowns of managed pods in the last %s\n", rep.Window)
		return ExitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tWORKLOAD\tCONTAINER\tPROFILE\tSHUTDOWNS\tKILLED\tP50\tP99\tGRACE\tVERDICT")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s/%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", r.Namespace, r.Kind, r.Name, r.Container, r.Profile,
			r.Shutdowns, r.Killed, secs(r.P50Seconds), secs(r.P99Seconds), secs(r.GraceSeconds), r.Verdict)
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(stderr, "lastcall: error: write: %v\n", err)
		return ExitBadInput
	}
	fmt.Fprintf(stdout, "(last %s)\n", rep.Window)
	return ExitOK
}

func secs(s float64) string {
	if s == 0 {
		return "-"
	}
	return strconv.FormatFloat(s, 'f', -1, 64) + "s"
}
