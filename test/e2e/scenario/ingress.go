//go:build e2e

package scenario

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/lastcall-dev/lastcall/internal/loadgen"
	"github.com/lastcall-dev/lastcall/internal/timeline"
	"github.com/lastcall-dev/lastcall/test/e2e/framework"
)

// IngressOptions configure the ingress scenarios: the nginx + php-fpm app behind Traefik, an open-loop load
// of short and slow requests through Traefik, and a rollout restart (or a scale-down) in the middle of it.
type IngressOptions struct {
	Replicas    int32         // 3
	ScaleTo     int32         // > 0: scale down to this many replicas instead of a rollout restart
	Rate        float64       // arrivals per second (100)
	MinRequests int           // the load runs until at least this many arrivals (2000) and the rollout is over
	KeepAlive   float64       // share of requests on kept-alive client connections (0.5)
	Mix         loadgen.Mix   // loadgen.ShortAndSlow
	WarmUp      time.Duration // load before the kubectl command (3 s)
	Tail        time.Duration // load after the rollout completed (2 s)
	Timeout     time.Duration // per request (15 s)
	MaxDuration time.Duration // hard bound on the load (3 min)
	PHPChildren int           // php-fpm's static children per pod (128)
	Logf        func(format string, a ...any)
}

func (o *IngressOptions) defaults() {
	if o.Replicas == 0 {
		o.Replicas = 3
	}
	if o.Rate == 0 {
		o.Rate = 100
	}
	if o.MinRequests == 0 {
		o.MinRequests = 2000
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = 0.5
	}
	if o.Mix == nil {
		o.Mix = loadgen.ShortAndSlow
	}
	if o.WarmUp == 0 {
		o.WarmUp = 3 * time.Second
	}
	if o.Tail == 0 {
		o.Tail = 2 * time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = 15 * time.Second
	}
	if o.MaxDuration == 0 {
		o.MaxDuration = 3 * time.Minute
	}
	if o.PHPChildren == 0 {
		o.PHPChildren = 128
	}
	if o.Logf == nil {
		o.Logf = framework.Logf
	}
}

// PodEvent is something that happened to a pod of the app during the run, as the test's watch saw it.
type PodEvent struct {
	At     time.Time
	Pod    string
	IP     string
	Kind   timeline.EventKind
	Detail string // for Gone: how each container ended (from the pod's final status)
}

// IngressResult is what one run measured.
type IngressResult struct {
	Namespace string
	Lastcall  bool
	Mode      string    // how lastcall served the namespace, set by the caller for the table ("policy mode"); "": the webhook
	Action    string    // "rollout restart" or "scale 3 -> 1"
	Zero      time.Time // the kubectl command
	Rollout   time.Duration
	Records   []loadgen.Result
	Pods      []corev1.Pod // after the rollout, as stored
	Events    []PodEvent   // old pods terminating and gone, new pods ready, Traefik dropping an old pod
	Servers   []Servers    // every change of what Traefik balanced the app's service over
	// Drops are, per old pod, the time from its deletion (the watch event) until Traefik stopped picking it for
	// new requests (fenced or removed in its API, polled every 100 ms).
	Drops   map[string]time.Duration
	Options IngressOptions
}

// IngressApp returns the ConfigMap, Deployment and Service of the app as RunIngress deploys them with o.
func IngressApp(o IngressOptions) (*corev1.ConfigMap, *appsv1.Deployment, *corev1.Service) {
	o.defaults()
	cm, d, svc := webAppObjects(o.Replicas, "20s", o.PHPChildren)
	// One pod takes all of the ~45 requests in flight after the scale-down: a readiness probe that fails on
	// one slow answer (the other scenarios' setting) would take the last pod out of the Service under CPU
	// contention, and Traefik answers 404 for a service without servers. Three misses, as a production
	// probe would allow; the same with and without lastcall, and not involved in how a pod stops.
	d.Spec.Template.Spec.Containers[0].ReadinessProbe.FailureThreshold = 3
	d.Spec.Template.Spec.Containers[0].ReadinessProbe.TimeoutSeconds = 2
	return cm, d, svc
}

// RunIngress deploys the app and its Ingress in ns (which must exist), waits until Traefik routes to every
// pod, runs the open-loop load through Traefik, restarts (or scales) the Deployment after the warm-up, and
// returns every request's outcome with the pod events and Traefik's server changes.
func RunIngress(ctx context.Context, env *framework.Env, tr *Traefik, ns string, o IngressOptions) (*IngressResult, error) {
	o.defaults()
	ns0, err := env.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	res := &IngressResult{Namespace: ns, Lastcall: ns0.Labels[framework.LabelInject] == "enabled", Options: o, Drops: map[string]time.Duration{},
		Action: "rollout restart"}
	if o.ScaleTo > 0 {
		res.Action = fmt.Sprintf("scale %d -> %d", o.Replicas, o.ScaleTo)
	}
	cm, d, svc := IngressApp(o)
	if _, err := env.Client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	if _, err := env.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	if _, err := env.Client.NetworkingV1().Ingresses(ns).Create(ctx, Ingress(ns), metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	if _, err := env.Client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	if err := waitRolledOut(ctx, env, ns, o.Replicas, 3*time.Minute); err != nil {
		return nil, err
	}
	if err := waitRouted(ctx, tr, ns, int(o.Replicas)); err != nil {
		return nil, err
	}

	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	pw, err := watchPods(wctx, env, ns)
	if err != nil {
		return nil, err
	}
	sp := pollServers(wctx, tr, ns)

	load, err := loadgen.StartOpenLoop(ctx, loadgen.OpenLoopConfig{
		Target: tr.WebAddr(), Allowed: []netip.Prefix{env.PodCIDR()}, Host: IngressHost(ns), Rate: o.Rate, Mix: o.Mix,
		PathTemplate: "/slow?ms=%d", KeepAlive: o.KeepAlive, Timeout: o.Timeout,
		MaxRequests: int(o.Rate*o.MaxDuration.Seconds()) + 1, MaxDuration: o.MaxDuration, Seed: uint64(time.Now().UnixNano()),
	})
	if err != nil {
		return nil, fmt.Errorf("starting the load: %w", err)
	}
	o.Logf("%s: %d pods behind Traefik %s (%s); open-loop load %.0f/s to %s (Host %s), %.0f%% on kept-alive connections",
		ns, o.Replicas, tr.Version, tr.Pod, o.Rate, tr.WebAddr(), IngressHost(ns), o.KeepAlive*100)
	time.Sleep(o.WarmUp)
	action, want := []string{"rollout", "restart", "-n", ns, "deployment/" + WebApp}, o.Replicas
	if o.ScaleTo > 0 {
		action, want = []string{"scale", "-n", ns, "deployment/" + WebApp, fmt.Sprintf("--replicas=%d", o.ScaleTo)}, o.ScaleTo
	}
	res.Zero = time.Now()
	if _, err := env.Kubectl(ctx, action...); err != nil {
		load.Stop()
		return nil, err
	}
	err = waitRolledOut(ctx, env, ns, want, 5*time.Minute)
	res.Rollout = time.Since(res.Zero)
	if err == nil {
		o.Logf("%s: kubectl %s done in %.1fs (%d pods left, no old or terminating one)", ns, strings.Join(action[:2], " "), res.Rollout.Seconds(), want)
		time.Sleep(o.Tail)
		// An open-loop load has a fixed rate: a short rollout is followed by steady traffic to the new pods until
		// the run has its minimum of requests.
		for load.Issued() < o.MinRequests {
			select {
			case <-load.Done():
			case <-time.After(100 * time.Millisecond):
				continue
			}
			break
		}
	}
	res.Records = load.Stop()
	stopWatch()
	res.Servers = sp.wait()
	pods, ev := pw.wait()
	res.Events = ev
	res.Events = append(res.Events, PodEvent{At: res.Zero, Kind: timeline.Action})
	res.computeDrops()
	sort.SliceStable(res.Events, func(i, j int) bool { return res.Events[i].At.Before(res.Events[j].At) })
	res.Pods = pods
	if err != nil {
		return res, err
	}
	if n := len(res.Records); n < o.MinRequests {
		return res, fmt.Errorf("%s: only %d requests (want >= %d): the load ended early (bound %v)", ns, n, o.MinRequests, o.MaxDuration)
	}
	return res, nil
}

// waitRouted waits until Traefik answers for the namespace's host and balances over n active servers.
func waitRouted(ctx context.Context, tr *Traefik, ns string, n int) error {
	return framework.WaitFor(ctx, 90*time.Second, fmt.Sprintf("Traefik routing %s to %d pods", IngressHost(ns), n), func(ctx context.Context) (bool, error) {
		s, err := tr.servers(ctx, ns, WebApp)
		if err != nil || len(s.Active) != n {
			return false, nil
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+tr.WebAddr()+"/slow?ms=0", nil)
		if err != nil {
			return false, err
		}
		req.Host = IngressHost(ns)
		resp, err := tr.api.Do(req)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// podWatch records the app's pod events: old pods terminating and gone, new pods ready.
type podWatch struct {
	mu     sync.Mutex
	events []PodEvent
	pods   map[string]*corev1.Pod
	done   chan struct{}
}

func watchPods(ctx context.Context, env *framework.Env, ns string) (*podWatch, error) {
	opts := metav1.ListOptions{LabelSelector: "app=" + WebApp}
	list, err := env.Client.CoreV1().Pods(ns).List(ctx, opts)
	if err != nil {
		return nil, err
	}
	pw := &podWatch{pods: map[string]*corev1.Pod{}, done: make(chan struct{})}
	seen := map[string]map[timeline.EventKind]bool{}
	for i := range list.Items {
		p := &list.Items[i]
		pw.pods[p.Name] = p
		seen[p.Name] = map[timeline.EventKind]bool{timeline.Ready: podReady(p)}
	}
	opts.ResourceVersion = list.ResourceVersion
	w, err := env.Client.CoreV1().Pods(ns).Watch(ctx, opts)
	if err != nil {
		return nil, err
	}
	go func() {
		defer close(pw.done)
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.ResultChan():
				if !ok {
					return
				}
				p, isPod := ev.Object.(*corev1.Pod)
				if !isPod {
					continue
				}
				now := time.Now()
				pw.mu.Lock()
				if seen[p.Name] == nil {
					seen[p.Name] = map[timeline.EventKind]bool{}
				}
				ip := p.Status.PodIP
				if old := pw.pods[p.Name]; ip == "" && old != nil {
					ip = old.Status.PodIP
				}
				mark := func(k timeline.EventKind) {
					if !seen[p.Name][k] {
						seen[p.Name][k] = true
						e := PodEvent{At: now, Pod: p.Name, IP: ip, Kind: k}
						if k == timeline.Gone {
							e.Detail = containerEnds(p)
						}
						pw.events = append(pw.events, e)
					}
				}
				switch {
				case ev.Type == watch.Deleted:
					mark(timeline.Terminating) // deleted at once (grace 0) counts as terminating too
					mark(timeline.Gone)
					delete(pw.pods, p.Name)
				default:
					if p.DeletionTimestamp != nil {
						mark(timeline.Terminating)
					} else if podReady(p) {
						mark(timeline.Ready)
					}
					pw.pods[p.Name] = p
				}
				pw.mu.Unlock()
			}
		}
	}()
	return pw, nil
}

// containerEnds says how each container of a deleted pod ended: exit code and when.
func containerEnds(p *corev1.Pod) string {
	var parts []string
	for _, cs := range p.Status.ContainerStatuses {
		if t := cs.State.Terminated; t != nil {
			parts = append(parts, fmt.Sprintf("%s %s exit %d at %s", cs.Name, t.Reason, t.ExitCode, t.FinishedAt.UTC().Format("15:04:05")))
		}
	}
	return strings.Join(parts, ", ")
}

// wait returns the pods left and the events, after the watch's context ended.
func (pw *podWatch) wait() ([]corev1.Pod, []PodEvent) {
	<-pw.done
	pw.mu.Lock()
	defer pw.mu.Unlock()
	var pods []corev1.Pod
	for _, p := range pw.pods {
		pods = append(pods, *p)
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	return pods, append([]PodEvent(nil), pw.events...)
}

// serverPoll records every change of Traefik's load balancer for the app's service.
type serverPoll struct {
	changes []Servers
	done    chan struct{}
}

func pollServers(ctx context.Context, tr *Traefik, ns string) *serverPoll {
	sp := &serverPoll{done: make(chan struct{})}
	go func() {
		defer close(sp.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if s, err := tr.servers(ctx, ns, WebApp); err == nil {
				sort.Strings(s.Active)
				sort.Strings(s.Fenced)
				if n := len(sp.changes); n == 0 || !slices.Equal(sp.changes[n-1].Active, s.Active) || !slices.Equal(sp.changes[n-1].Fenced, s.Fenced) {
					sp.changes = append(sp.changes, s)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return sp
}

func (sp *serverPoll) wait() []Servers {
	<-sp.done
	return sp.changes
}

// computeDrops finds, for each old pod that terminated, the first server change in which Traefik no longer
// picks its address after having picked it, and adds a Dropped event there. The time is measured from the
// watch event of the pod's deletion; it could be (slightly) negative if Traefik's poll saw the change first.
func (r *IngressResult) computeDrops() {
	var drops []PodEvent
	for _, e := range r.Events {
		if e.Kind != timeline.Terminating || e.IP == "" {
			continue
		}
		seen := false
		for _, s := range r.Servers {
			active := false
			for _, a := range s.Active {
				active = active || strings.HasPrefix(a, e.IP+":")
			}
			if active {
				seen = true
				continue
			}
			if seen {
				r.Drops[e.Pod] = s.At.Sub(e.At)
				drops = append(drops, PodEvent{At: s.At, Pod: e.Pod, IP: e.IP, Kind: timeline.Dropped})
				break
			}
		}
	}
	r.Events = append(r.Events, drops...)
}

// Failures returns the requests that did not end OK.
func (r *IngressResult) Failures() []loadgen.Result {
	var out []loadgen.Result
	for _, rec := range r.Records {
		if rec.Kind != loadgen.OK {
			out = append(out, rec)
		}
	}
	return out
}

// Latency returns the p-th percentile (0..100, nearest rank) of the successful requests' durations.
func (r *IngressResult) Latency(p float64) time.Duration { return okLatency(r.Records, p) }

// okLatency is the p-th percentile of the successful requests' durations, for either kind of record.
func okLatency[R interface {
	Duration() time.Duration
	Succeeded() bool
}](recs []R, p float64) time.Duration {
	var ds []time.Duration
	for _, rec := range recs {
		if rec.Succeeded() {
			ds = append(ds, rec.Duration())
		}
	}
	return percentile(ds, p)
}

// percentile is the nearest-rank p-th percentile (0..100) of ds: the smallest duration that at least p% of ds
// do not exceed; 0 for none. Both scenarios report latency with it, so their tables compare.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	i := int(math.Ceil(p/100*float64(len(ds)))) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

// MaxDrop is the longest time Traefik kept picking a terminating pod.
func (r *IngressResult) MaxDrop() time.Duration {
	var m time.Duration
	for _, d := range r.Drops {
		m = max(m, d)
	}
	return m
}

// IngressOutcomes are the failure columns of the ingress table, as loadgen.Result.Outcome names them; every
// other failure is counted under "other" (and listed by FailureLines).
var IngressOutcomes = []string{"502", "503", "504", "reset", "eof", "timeout"}

// IngressTable renders runs as a Markdown table.
func IngressTable(runs ...*IngressResult) string {
	var b strings.Builder
	b.WriteString("| run | scenario | requests | failed |")
	for _, k := range IngressOutcomes {
		b.WriteString(" " + k + " |")
	}
	b.WriteString(" other | on kept-alive conn | p50 | p99 | rollout | Traefik drop |\n|---|---|---:|---:|")
	for range IngressOutcomes {
		b.WriteString("---:|")
	}
	b.WriteString("---:|---:|---:|---:|---:|---:|\n")
	for _, r := range runs {
		name := "without lastcall"
		if r.Lastcall {
			name = "with lastcall"
			if r.Mode != "" {
				name += " (" + r.Mode + ")"
			}
		}
		by := map[string]int{}
		reused := 0
		for _, f := range r.Failures() {
			by[f.Outcome()]++
			if f.Reused {
				reused++
			}
		}
		other := len(r.Failures())
		fmt.Fprintf(&b, "| %s | %s | %d | %d |", name, r.Action, len(r.Records), len(r.Failures()))
		for _, k := range IngressOutcomes {
			fmt.Fprintf(&b, " %d |", by[k])
			other -= by[k]
		}
		fmt.Fprintf(&b, " %d | %d | %.0fms | %.0fms | %.1fs | %.1fs |\n", other, reused, ms(r.Latency(50)), ms(r.Latency(99)), r.Rollout.Seconds(), r.MaxDrop().Seconds())
	}
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// localPort is the client's ephemeral port in a dial or read error ("10.244.0.1:34842->"), left out when
// failures are grouped.
var localPort = regexp.MustCompile(`:[0-9]+->`)

// FailureSummary counts the failures by outcome and error text (without the client's port), most frequent first.
func (r *IngressResult) FailureSummary() []string {
	type key struct{ outcome, err string }
	counts := map[key]int{}
	for _, f := range r.Failures() {
		counts[key{f.Outcome(), localPort.ReplaceAllString(f.Err, "->")}]++
	}
	keys := make([]key, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if counts[keys[i]] != counts[keys[j]] {
			return counts[keys[i]] > counts[keys[j]]
		}
		return keys[i].outcome+keys[i].err < keys[j].outcome+keys[j].err
	})
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%d x %s: %s", counts[k], k.outcome, k.err))
	}
	return out
}

// FailureLines describes the failures: when (relative to the kubectl command), the class, connection, outcome
// and error; at most limit lines.
func (r *IngressResult) FailureLines(limit int) []string {
	var out []string
	fs := r.Failures()
	for i, rec := range fs {
		if i == limit {
			out = append(out, fmt.Sprintf("... and %d more", len(fs)-limit))
			break
		}
		conn := "fresh conn"
		if rec.Reused {
			conn = "kept-alive conn"
		}
		out = append(out, fmt.Sprintf("t=%+.2fs..%+.2fs %s request (%s): %s %s", rec.Start.Sub(r.Zero).Seconds(), rec.End.Sub(r.Zero).Seconds(), rec.Class, conn, rec.Outcome(), rec.Err))
	}
	return out
}

// EventLines describes the pod events and Traefik's drops relative to the kubectl command.
func (r *IngressResult) EventLines() []string {
	var out []string
	for _, e := range r.Events {
		line := fmt.Sprintf("t=%+.2fs %s", e.At.Sub(r.Zero).Seconds(), e.Kind)
		if e.Pod != "" {
			line += fmt.Sprintf(" %s (%s)", e.Pod, e.IP)
		}
		if e.Kind == timeline.Dropped {
			line += fmt.Sprintf(", %.1fs after its deletion", r.Drops[e.Pod].Seconds())
		}
		if e.Detail != "" {
			line += ": " + e.Detail
		}
		out = append(out, line)
	}
	return out
}

// Panel is the run as a panel of the timeline picture.
func (r *IngressResult) Panel(title string) timeline.Panel {
	p := timeline.Panel{Title: title, Zero: r.Zero, Results: r.Records}
	for _, e := range r.Events {
		p.Events = append(p.Events, timeline.Event{At: e.At, Kind: e.Kind})
	}
	return p
}
