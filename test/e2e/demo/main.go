//go:build e2e

// Command demo is `make demo`: on the local cluster (or KIND=1 / E2E_KUBECONFIG like the e2e suite) it
// installs lastcall with its Helm chart and Traefik as the ingress, then runs two scenarios twice with the same
// manifests — in a namespace without lastcall's opt-in label and in one with it: a rollout restart of 3
// replicas of nginx + php-fpm and a scale-down from 3 to 1, each under an open-loop load of 100 requests/s
// through Traefik. It prints the table, the injected container spec and the rendered shutdown timeline, and
// draws requests per second over time into _output/demo/*.png. `-client direct` runs the older demo instead:
// an endpoint-following client that imitates an ingress, sending to the pod IPs itself. The cluster is left
// running; `make demo-down` (this command with -down) removes everything.
//
//	go run -tags e2e ./test/e2e/demo [-client ingress|direct] [-down]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/lastcall-dev/lastcall/internal/timeline"
	"github.com/lastcall-dev/lastcall/test/e2e/framework"
	"github.com/lastcall-dev/lastcall/test/e2e/scenario"
)

const (
	nsWithout = "lastcall-demo-without"
	nsWith    = "lastcall-demo-with"
)

// The ingress demo's namespaces: one pair per scenario, so the second needs no namespace deletion to wait for.
var ingressScenarios = []struct {
	name, title string
	opts        scenario.IngressOptions
}{
	{"rollout", "kubectl rollout restart of 3 replicas", scenario.IngressOptions{Replicas: 3}},
	{"scale-down", "kubectl scale from 3 replicas to 1", scenario.IngressOptions{Replicas: 3, ScaleTo: 1}},
}

func ingressNamespaces(name string) (without, with string) {
	return "lastcall-demo-" + name + "-without", "lastcall-demo-" + name + "-with"
}

func main() {
	down := flag.Bool("down", false, "remove everything the demo created (the local cluster: hack/cluster/local.sh down)")
	client := flag.String("client", "ingress", "ingress: the load goes through Traefik (the default); direct: an endpoint-following client sends to the pod IPs itself (the older demo)")
	rate := flag.Float64("rate", 100, "ingress: arrivals per second of the open-loop load")
	minRequests := flag.Int("requests", 2000, "ingress: at least this many requests per run")
	clients := flag.Int("clients", 4, "direct: concurrent load clients")
	keepAlive := flag.Int("keepalive-clients", -1, "direct: how many of the clients keep one connection per endpoint (default: half)")
	propagation := flag.Duration("propagation", time.Second, "direct: endpoint propagation delay of the load client")
	where := flag.String("load", "auto", "direct: where the load runs: host (this process; needs the pod network), pod (testapp load in the cluster) or auto (host when the pod network is reachable)")
	flag.Parse()
	if *where != "auto" && *where != "host" && *where != "pod" {
		fmt.Fprintf(os.Stderr, "demo: -load %q: want auto, host or pod\n", *where)
		os.Exit(2)
	}
	if *client != "ingress" && *client != "direct" {
		fmt.Fprintf(os.Stderr, "demo: -client %q: want ingress or direct\n", *client)
		os.Exit(2)
	}
	if *rate <= 0 || *rate > 1000 || *minRequests < 1 || *minRequests > 100000 {
		fmt.Fprintf(os.Stderr, "demo: -rate %v -requests %d: want a rate in (0, 1000] and 1..100000 requests\n", *rate, *minRequests)
		os.Exit(2)
	}
	switch {
	case *keepAlive < 0:
		*keepAlive = 0 // half (LoadConfig's default)
	case *keepAlive == 0:
		*keepAlive = -1 // none
	}
	ctx := context.Background()
	var err error
	switch {
	case *down:
		err = teardown(ctx)
	case *client == "ingress":
		err = demoIngress(ctx, *rate, *minRequests)
	default:
		err = demo(ctx, scenario.LoadConfig{Clients: *clients, KeepAliveClients: *keepAlive, MinMs: 1000, MaxMs: 3000,
			MaxRequests: 2000, MaxDuration: 4 * time.Minute, InCluster: *where == "pod"}, *propagation, *where == "host")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func step(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "\n\033[1m==> %s\033[0m\n", fmt.Sprintf(format, a...))
}

// demoIngress is the default demo: both scenarios through Traefik, without and with lastcall.
func demoIngress(ctx context.Context, rate float64, minRequests int) error {
	t0 := time.Now()
	step("cluster, images, lastcall (Helm chart charts/lastcall, self-managed certificates) and Traefik")
	env, err := framework.Start(ctx, framework.Options{
		ImageTargets: []string{"base", "testapp", "lastcall", "traefik"},
		Images:       append([]string{framework.ImageDebianWeb, framework.ImageTestapp, scenario.ImageTraefik}, framework.LastcallImages()...),
		Setup:        func(ctx context.Context, env *framework.Env) error { return env.InstallLastcall(ctx) },
	})
	if err != nil {
		return err
	}
	tr, err := scenario.InstallTraefik(ctx, env)
	if err != nil {
		return fmt.Errorf("%w (the ingress demo needs the pod network; on this cluster use DEMO_ARGS='-client direct -load pod')", err)
	}
	ready := time.Since(t0)
	dir := filepath.Join(env.Root, "_output", "demo")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var all []*scenario.IngressResult
	var report strings.Builder
	fmt.Fprintf(&report, "Traefik %s (%s), default settings; open-loop load %.0f requests/s, 80%% 20-100 ms and 20%% 1-3 s, half on kept-alive connections, never retried.\n\n", tr.Version, strings.Join(scenario.TraefikArgs, " "), rate)
	var pictures []string
	for _, sc := range ingressScenarios {
		without, with := ingressNamespaces(sc.name)
		opts := sc.opts
		opts.Rate, opts.MinRequests = rate, minRequests
		var pair []*scenario.IngressResult
		for _, c := range []struct {
			ns     string
			labels map[string]string
			what   string
		}{{without, nil, "WITHOUT lastcall (namespace not labelled)"}, {with, map[string]string{framework.LabelInject: "enabled"}, "WITH lastcall (namespace labelled " + framework.LabelInject + "=enabled)"}} {
			step("%s %s: nginx + php-fpm behind Traefik, %.0f requests/s", sc.title, c.what, rate)
			if err := freshNamespace(ctx, env, c.ns, c.labels); err != nil {
				return err
			}
			r, err := scenario.RunIngress(ctx, env, tr, c.ns, opts)
			if err != nil {
				return fmt.Errorf("%s: %w", c.ns, err)
			}
			for _, l := range r.EventLines() {
				fmt.Fprintln(os.Stderr, "   ", l)
			}
			for _, l := range r.FailureSummary() {
				fmt.Fprintln(os.Stderr, "    failed", l)
			}
			for _, l := range r.FailureLines(10) {
				fmt.Fprintln(os.Stderr, "   ", l)
			}
			pair = append(pair, r)
		}
		png := filepath.Join(dir, sc.name+".png")
		if err := timeline.Write(png, fmt.Sprintf("%s: nginx + php-fpm behind Traefik %s, open-loop %.0f requests/s", sc.title, tr.Version, rate),
			pair[0].Panel("without lastcall"), pair[1].Panel("with lastcall")); err != nil {
			return err
		}
		pictures = append(pictures, png)
		fmt.Fprintf(&report, "### %s\n\n%s\n", sc.title, scenario.IngressTable(pair...))
		for i, r := range pair {
			fmt.Fprintf(&report, "%s, events:\n", []string{"without lastcall", "with lastcall"}[i])
			for _, l := range r.EventLines() {
				fmt.Fprintf(&report, "    %s\n", l)
			}
			report.WriteString("\n")
		}
		all = append(all, pair...)
	}

	step("what lastcall injected (pod in %s, as stored by the apiserver)", all[1].Namespace)
	if len(all[1].Pods) > 0 {
		fmt.Print(injectedSpec(&all[1].Pods[0]))
	}
	step("the shutdown timeline lastcall rendered (lastcall explain on the same Deployment)")
	fmt.Print(explain(env))

	step("results (also in _output/demo/results.md)")
	table := scenario.IngressTable(all...)
	fmt.Print(table)
	fmt.Printf("\nrequests: open loop, %.0f/s (80%% /slow?ms=20..100, 20%% /slow?ms=1000..3000) to Traefik %s at %s, half on\n"+
		"kept-alive connections, never retried; Traefik routes to the pods it learns from the EndpointSlices (its\n"+
		"default settings). \"Traefik drop\": the longest time Traefik kept picking a deleted pod. Failure kinds:\n"+
		"docs/results.md. Pictures (requests per second, pod events marked): %s\n",
		rate, tr.Version, tr.WebAddr(), strings.Join(pictures, ", "))
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(report.String()), 0o644); err != nil {
		return err
	}
	fmt.Printf("\ndemo done in %.0fs (cluster, lastcall and Traefik ready after %.0fs).\n", time.Since(t0).Seconds(), ready.Seconds())
	fmt.Printf("The cluster is still running: export KUBECONFIG=%s\n", env.Provider.Kubeconfig())
	fmt.Printf("Remove everything with: make demo-down\n")
	failedWith := 0
	for _, r := range all {
		if !r.Lastcall && len(r.Failures()) == 0 {
			fmt.Printf("note: %s without lastcall failed no request this time (try again, or a higher -rate)\n", r.Action)
		}
		if r.Lastcall {
			failedWith += len(r.Failures())
		}
	}
	if failedWith != 0 {
		return fmt.Errorf("with lastcall %d requests failed", failedWith)
	}
	return nil
}

func demo(ctx context.Context, load scenario.LoadConfig, propagation time.Duration, hostOnly bool) error {
	t0 := time.Now()
	step("cluster, images and lastcall (Helm chart charts/lastcall, self-managed certificates)")
	env, err := framework.Start(ctx, framework.Options{
		ImageTargets: []string{"base", "testapp", "lastcall"},
		Images:       append([]string{framework.ImageDebianWeb, framework.ImageTestapp}, framework.LastcallImages()...),
		Setup:        func(ctx context.Context, env *framework.Env) error { return env.InstallLastcall(ctx) },
	})
	if err != nil {
		return err
	}
	ready := time.Since(t0)
	if hostOnly && !env.Provider.PodNetworkReachable() {
		return fmt.Errorf("-load host: this host does not reach the pod network of provider %s; use -load pod", env.Provider.Name())
	}
	opts := scenario.RolloutOptions{Replicas: 2, Propagation: propagation, Load: load}
	var runs []*scenario.RolloutResult
	for _, c := range []struct {
		ns     string
		labels map[string]string
		what   string
	}{{nsWithout, nil, "WITHOUT lastcall (namespace not labelled)"}, {nsWith, map[string]string{framework.LabelInject: "enabled"}, "WITH lastcall (namespace labelled " + framework.LabelInject + "=enabled)"}} {
		step("scenario 1 %s: nginx + php-fpm, 2 replicas, kubectl rollout restart under load", c.what)
		if err := freshNamespace(ctx, env, c.ns, c.labels); err != nil {
			return err
		}
		r, err := scenario.RunRollout(ctx, env, c.ns, opts)
		if err != nil {
			return fmt.Errorf("%s: %w", c.ns, err)
		}
		for _, l := range r.FailureLines(15) {
			fmt.Fprintln(os.Stderr, "   ", l)
		}
		runs = append(runs, r)
	}

	var out strings.Builder
	step("what lastcall injected (pod in %s, as stored by the apiserver)", nsWith)
	if len(runs[1].Pods) > 0 {
		out.WriteString(injectedSpec(&runs[1].Pods[0]))
	}
	fmt.Print(out.String())
	step("the shutdown timeline lastcall rendered (lastcall explain on the same Deployment)")
	fmt.Print(explain(env))

	step("results (also in _output/demo/results.md)")
	table := scenario.Table(runs...)
	fmt.Print(table)
	l := runs[0].Load
	fmt.Printf("\nrequests: /slow?ms=%d..%d through nginx -> php-fpm (FastCGI, unix socket) from %s, %d clients\n"+
		"(%d keep a connection per endpoint like an ingress, the others open one per request), never retried, sent\n"+
		"only to the pod IPs the client learned from the EndpointSlices %v later. Failure kinds: docs/results.md.\n",
		l.MinMs, l.MaxMs, l.Where(), l.Clients, l.KeepAliveClients, propagation)
	dir := filepath.Join(env.Root, "_output", "demo")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "results.md"), []byte(table), 0o644)
	fmt.Printf("\ndemo done in %.0fs (cluster and lastcall ready after %.0fs).\n", time.Since(t0).Seconds(), ready.Seconds())
	fmt.Printf("The cluster is still running: export KUBECONFIG=%s\n", env.Provider.Kubeconfig())
	fmt.Printf("Remove everything with: make demo-down\n")
	if f := len(runs[0].Failures()); f == 0 {
		fmt.Println("note: the run without lastcall failed no request this time (try again, or more -clients)")
	}
	if f := len(runs[1].Failures()); f != 0 {
		return fmt.Errorf("with lastcall %d requests failed", f)
	}
	return nil
}

// freshNamespace deletes ns if a previous demo left it, then creates it with labels.
func freshNamespace(ctx context.Context, env *framework.Env, ns string, labels map[string]string) error {
	err := env.Client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if err == nil {
		framework.Logf("deleting %s left by an earlier demo", ns)
		if err := framework.WaitFor(ctx, 3*time.Minute, "namespace "+ns+" deleted", func(ctx context.Context) (bool, error) {
			_, err := env.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		}); err != nil {
			return err
		}
	}
	if _, err := env.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	return framework.WaitFor(ctx, 30*time.Second, "default ServiceAccount in "+ns, func(ctx context.Context) (bool, error) {
		_, err := env.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}

// injectedSpec shows what lastcall added to the pod: annotations, grace period, init containers, lifecycles.
func injectedSpec(p *corev1.Pod) string {
	type container struct {
		Name         string                  `json:"name"`
		Image        string                  `json:"image,omitempty"`
		Command      []string                `json:"command,omitempty"`
		Lifecycle    *corev1.Lifecycle       `json:"lifecycle,omitempty"`
		VolumeMounts []corev1.VolumeMount    `json:"volumeMounts,omitempty"`
		Security     *corev1.SecurityContext `json:"securityContext,omitempty"`
	}
	view := struct {
		Annotations                   map[string]string `json:"annotations"`
		TerminationGracePeriodSeconds *int64            `json:"terminationGracePeriodSeconds"`
		InitContainers                []container       `json:"initContainers"`
		Containers                    []container       `json:"containers"`
	}{TerminationGracePeriodSeconds: p.Spec.TerminationGracePeriodSeconds, Annotations: map[string]string{}}
	for k, v := range p.Annotations {
		if strings.HasPrefix(k, "lastcall.dev/") {
			view.Annotations[k] = v
		}
	}
	for _, c := range p.Spec.InitContainers {
		view.InitContainers = append(view.InitContainers, container{c.Name, c.Image, c.Command, c.Lifecycle, c.VolumeMounts, c.SecurityContext})
	}
	for _, c := range p.Spec.Containers {
		view.Containers = append(view.Containers, container{Name: c.Name, Lifecycle: c.Lifecycle})
	}
	b, err := yaml.Marshal(view)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// explain runs the lastcall CLI (bin/lastcall, from make build) on the demo Deployment.
func explain(env *framework.Env) string {
	bin := filepath.Join(env.Root, "bin", "lastcall")
	if _, err := os.Stat(bin); err != nil {
		return "(bin/lastcall not built: run make build)\n"
	}
	_, d, _ := scenario.WebAppObjects(2, "20s")
	d.APIVersion, d.Kind = "apps/v1", "Deployment"
	d.Namespace = nsWith
	b, err := yaml.Marshal(d)
	if err != nil {
		return err.Error()
	}
	cmd := exec.Command(bin, "explain", "-f", "-")
	cmd.Stdin = strings.NewReader(string(b))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Sprintf("lastcall explain: %v\n%s", err, out)
	}
	return string(out)
}

// teardown removes what the demo created: the whole local cluster, or on kind / an existing cluster the demo
// namespaces and the lastcall release.
func teardown(ctx context.Context) error {
	root, err := framework.RepoRoot()
	if err != nil {
		return err
	}
	p, err := framework.FromEnv(root)
	if err != nil {
		return err
	}
	if _, ok := p.(*framework.Local); ok {
		step("stopping the local cluster and removing everything it created (hack/cluster/local.sh down)")
		return p.Down(ctx)
	}
	if err := p.Up(ctx); err != nil {
		return err
	}
	env := &framework.Env{Provider: p, Root: root}
	namespaces := []string{nsWithout, nsWith, scenario.IngressNamespace}
	for _, sc := range ingressScenarios {
		without, with := ingressNamespaces(sc.name)
		namespaces = append(namespaces, without, with)
	}
	for _, ns := range namespaces {
		if out, err := env.Kubectl(ctx, "delete", "namespace", ns, "--ignore-not-found", "--wait=true"); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
	}
	for _, obj := range []string{"clusterrole/" + scenario.IngressNamespace + "-" + scenario.TraefikName,
		"clusterrolebinding/" + scenario.IngressNamespace + "-" + scenario.TraefikName, "ingressclass/" + scenario.IngressClassName} {
		if out, err := env.Kubectl(ctx, "delete", obj, "--ignore-not-found"); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
	}
	out, err := env.Helm(ctx, "uninstall", framework.LastcallRelease, "-n", framework.LastcallNamespace, "--ignore-not-found", "--wait")
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	_, err = env.Kubectl(ctx, "delete", "namespace", framework.LastcallNamespace, "--ignore-not-found")
	return err
}
