package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/lastcall-dev/lastcall/api/v1alpha1"
	"github.com/lastcall-dev/lastcall/internal/observer/summary"
	"github.com/lastcall-dev/lastcall/pkg/mutate"
)

// liveFlags are explain's flags for a live object (`lastcall explain deploy/web -n shop`).
type liveFlags struct {
	kubeconfig, kctx, kubectl string
	lastcallNS, release       string
}

// kubectlGet runs `kubectl get ARGS -o json` (with the kubeconfig flags) and returns its output.
type kubectlGetter func(ctx context.Context, args ...string) ([]byte, error)

func (l liveFlags) getter() kubectlGetter {
	return func(ctx context.Context, args ...string) ([]byte, error) {
		full := []string{}
		if l.kubeconfig != "" {
			full = append(full, "--kubeconfig", l.kubeconfig)
		}
		if l.kctx != "" {
			full = append(full, "--context", l.kctx)
		}
		full = append(full, args...)
		return runKubectl(ctx, l.kubectl, full)
	}
}

// liveInput reads what explain needs from the cluster into files in dir and points f at them: the object,
// its namespace's labels and annotations, the ShutdownProfiles, the installed chart's policy and the server
// version. It returns the object's kind and name, and notes for what it could not read (each with the
// fallback used).
func liveInput(ctx context.Context, get kubectlGetter, l liveFlags, ref string, f *inputFlags, dir string) (string, string, []string, error) {
	var notes []string
	ns := f.namespace
	obj, err := get(ctx, "get", ref, "-n", ns, "-o", "json")
	if err != nil {
		return "", "", nil, err
	}
	var meta struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(obj, &meta); err != nil {
		return "", "", nil, fmt.Errorf("%s: %w", ref, err)
	}
	if meta.Kind == "List" {
		return "", "", nil, fmt.Errorf("%s: name one object (kind/name), not a list", ref)
	}
	f.file = filepath.Join(dir, "object.json")
	if err := os.WriteFile(f.file, obj, 0o600); err != nil {
		return "", "", nil, err
	}

	nsObj, err := get(ctx, "get", "namespace", ns, "-o", "json")
	if err != nil {
		return "", "", nil, err
	}
	var nsMeta struct {
		Metadata struct {
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(nsObj, &nsMeta); err != nil {
		return "", "", nil, fmt.Errorf("namespace %s: %w", ns, err)
	}
	// Only lastcall's keys matter to the engine (and other values may hold commas); the name label makes
	// the set non-empty, so a namespace without lastcall's label reads as not opted in.
	labels := map[string]string{"kubernetes.io/metadata.name": ns}
	for k, v := range nsMeta.Metadata.Labels {
		if strings.HasPrefix(k, mutate.Prefix) {
			labels[k] = v
		}
	}
	f.nsLabels = joinKV(labels)
	ann := map[string]string{}
	for k, v := range nsMeta.Metadata.Annotations {
		if strings.HasPrefix(k, mutate.Prefix) {
			ann[k] = v
		}
	}
	f.nsAnnotations = joinKV(ann)

	if items, bad, err := clusterProfiles(ctx, get); err != nil {
		notes = append(notes, "cannot read ShutdownProfiles ("+firstLine1(err.Error())+"): using the built-in catalog only")
	} else {
		// The webhook leaves out a ShutdownProfile its catalog refuses; so does the explanation, with a note
		// (the files written below must not fail as --profiles would).
		_, refused := v1alpha1.Catalog(items)
		for n, err := range refused {
			bad[n] = err
		}
		for _, n := range sortedKeys(bad) {
			notes = append(notes, fmt.Sprintf("ShutdownProfile/%s: %s: left out, as the webhook does", n, oneLine(bad[n].Error())))
		}
		var b strings.Builder
		for i := range items {
			if bad[items[i].Name] != nil {
				continue
			}
			y, err := yaml.Marshal(&items[i])
			if err != nil {
				return "", "", nil, err
			}
			b.WriteString("---\n")
			b.Write(y)
		}
		if b.Len() > 0 {
			f.profiles = filepath.Join(dir, "profiles.yaml")
			if err := os.WriteFile(f.profiles, []byte(b.String()), 0o600); err != nil {
				return "", "", nil, err
			}
		}
	}

	cm, err := get(ctx, "get", "configmap", l.release+"-policy", "-n", l.lastcallNS, "-o", "json")
	if err != nil {
		notes = append(notes, "cannot read lastcall's policy ConfigMap "+l.lastcallNS+"/"+l.release+"-policy ("+firstLine1(err.Error())+"): using the default policy")
	} else {
		var c struct {
			Data map[string]string `json:"data"`
		}
		if err := json.Unmarshal(cm, &c); err != nil {
			return "", "", nil, fmt.Errorf("policy ConfigMap: %w", err)
		}
		f.policy = filepath.Join(dir, "policy.yaml")
		if err := os.WriteFile(f.policy, []byte(c.Data["policy.yaml"]), 0o600); err != nil {
			return "", "", nil, err
		}
	}

	if v, err := get(ctx, "version", "-o", "json"); err == nil {
		var ver struct {
			ServerVersion struct {
				GitVersion string `json:"gitVersion"`
			} `json:"serverVersion"`
		}
		if json.Unmarshal(v, &ver) == nil && ver.ServerVersion.GitVersion != "" {
			f.clusterVersion = ver.ServerVersion.GitVersion
		}
	}
	return meta.Kind, meta.Metadata.Name, notes, nil
}

// clusterProfiles lists the cluster's ShutdownProfiles (`kubectl get shutdownprofiles.lastcall.dev`), each
// with its name and spec only: status and server-set metadata are the cluster's, not the user's. An item whose
// spec this CLI cannot decode (a field of a newer CRD, a malformed duration) is returned in bad, keyed by name
// with the decoding error, and not in items: the callers leave it out and say so. err is for a list that
// cannot be read at all.
func clusterProfiles(ctx context.Context, get kubectlGetter) (items []v1alpha1.ShutdownProfile, bad map[string]error, err error) {
	list, err := get(ctx, "get", "shutdownprofiles.lastcall.dev", "-o", "json")
	if err != nil {
		return nil, nil, err
	}
	var l struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(list, &l); err != nil {
		return nil, nil, fmt.Errorf("ShutdownProfiles: %w", err)
	}
	bad = map[string]error{}
	for _, it := range l.Items {
		var sp struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Spec json.RawMessage `json:"spec"`
		}
		if err := json.Unmarshal(it, &sp); err != nil {
			return nil, nil, fmt.Errorf("ShutdownProfiles: %w", err)
		}
		clean, err := json.Marshal(map[string]any{"apiVersion": sp.APIVersion, "kind": sp.Kind, "metadata": map[string]string{"name": sp.Metadata.Name}, "spec": sp.Spec})
		if err != nil {
			return nil, nil, fmt.Errorf("ShutdownProfile/%s: %w", sp.Metadata.Name, err)
		}
		var p v1alpha1.ShutdownProfile
		if err := yaml.UnmarshalStrict(clean, &p); err != nil {
			bad[sp.Metadata.Name] = err
			continue
		}
		items = append(items, p)
	}
	return items, bad, nil
}

func joinKV(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

func firstLine1(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// writeLiveStatus adds what the observer knows about the workload's recent shutdowns.
func writeLiveStatus(ctx context.Context, w io.Writer, raw rawGetter, l liveFlags, ns, kind, name string) {
	rep, err := fetchStatus(ctx, raw, statusOptions{lastcallNS: l.lastcallNS, release: l.release, metricsPort: 8080})
	if err != nil {
		fmt.Fprintf(w, "\nrecent shutdowns: unknown (%s)\n", firstLine1(err.Error()))
		return
	}
	var rows []summary.Workload
	for _, wl := range rep.Workloads {
		if wl.Namespace == ns && strings.EqualFold(wl.Kind, kind) && wl.Name == name {
			rows = append(rows, wl)
		}
	}
	if len(rows) == 0 {
		fmt.Fprintf(w, "\nrecent shutdowns: none recorded in the last %s\n", rep.Window)
		return
	}
	fmt.Fprintf(w, "\nrecent shutdowns (last %s):\n", rep.Window)
	for _, r := range rows {
		fmt.Fprintf(w, "  %s: %d shutdowns, %d killed, p50 %s, p99 %s, grace %s: %s\n", r.Container, r.Shutdowns, r.Killed,
			secs(r.P50Seconds), secs(r.P99Seconds), secs(r.GraceSeconds), summary.Verdict(r))
	}
}

// liveTimeout bounds every cluster call of a live explain.
const liveTimeout = 30 * time.Second
