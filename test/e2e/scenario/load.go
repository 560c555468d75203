//go:build e2e

package scenario

import (
	"context"
	"errors"
	"fmt"

	"math/rand/v2"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/lastcall-dev/lastcall/internal/loadgen"
	"github.com/lastcall-dev/lastcall/test/e2e/framework"
)

// Record, Target and Change are the load generator's.
type (
	Record = loadgen.Record
	Target = loadgen.Target
	Change = loadgen.Change
)

// LoadConfig bounds the endpoint-following load.
type LoadConfig struct {
	Clients          int            // concurrent clients (4)
	KeepAliveClients int            // of those, how many keep one connection per endpoint (0: half; < 0: none)
	MinMs, MaxMs     int            // each request asks for /slow?ms=N, N uniform in [MinMs, MaxMs] (1000..3000)
	Port             int            // the pods' port (80)
	Timeout          time.Duration  // per request (15 s)
	MaxRequests      int            // hard bound on requests (5000)
	MaxDuration      time.Duration  // hard bound on the run (5 min)
	Allowed          []netip.Prefix // networks the targets must be in besides loopback: the cluster's pod CIDR only
	PathTemplate     string         // "/slow?ms=%d"
	// InCluster runs the load in a pod (testapp load) instead of this process. It is also chosen whenever the
	// provider's pod network is not reachable from here (kind, an existing cluster).
	InCluster bool
}

func (c *LoadConfig) defaults() {
	if c.Clients <= 0 {
		c.Clients = 4
	}
	switch {
	case c.KeepAliveClients == 0:
		c.KeepAliveClients = c.Clients / 2
	case c.KeepAliveClients < 0:
		c.KeepAliveClients = 0
	}
	if c.MinMs <= 0 {
		c.MinMs = 1000
	}
	if c.MaxMs < c.MinMs {
		c.MaxMs = 3000
	}
	if c.Port == 0 {
		c.Port = 80
	}
	if c.Timeout <= 0 {
		c.Timeout = 15 * time.Second
	}
	if c.MaxRequests <= 0 {
		c.MaxRequests = 5000
	}
	if c.MaxDuration <= 0 {
		c.MaxDuration = 5 * time.Minute
	}
	if c.PathTemplate == "" {
		c.PathTemplate = "/slow?ms=%d"
	}
}

// Where says where the load runs, for logs and the demo's table notes.
func (c *LoadConfig) Where() string {
	if c.InCluster {
		return "a pod in the cluster (testapp load)"
	}
	return "this host"
}

func (c *LoadConfig) balanced() loadgen.BalancedConfig {
	return loadgen.BalancedConfig{
		Port: c.Port, Clients: c.Clients, KeepAliveClients: c.KeepAliveClients, Timeout: c.Timeout,
		MaxRequests: c.MaxRequests, MaxDuration: c.MaxDuration, Allowed: c.Allowed,
		Path: func() string { return fmt.Sprintf(c.PathTemplate, c.MinMs+rand.IntN(c.MaxMs-c.MinMs+1)) },
	}
}

// loadRun is a running endpoint-following load, on this host or in a pod.
type loadRun interface {
	// Targets are the endpoints the load uses now (to wait until it sees every pod).
	Targets() []Target
	// Stop ends the load after the requests in flight and returns every record and every endpoint change.
	Stop() ([]Record, []Change, error)
}

// startLoad follows the Service's EndpointSlices with the propagation delay and loads its endpoints.
func startLoad(ctx context.Context, env *framework.Env, ns, service string, propagation time.Duration, cfg LoadConfig) (loadRun, error) {
	if cfg.InCluster {
		return startPodLoad(ctx, env, ns, service, propagation, cfg)
	}
	fctx, stopFollow := context.WithCancel(ctx)
	f := loadgen.FollowEndpoints(fctx, env.Client, ns, service, propagation)
	b, err := loadgen.StartBalanced(ctx, f, cfg.balanced())
	if err != nil {
		stopFollow()
		return nil, err
	}
	return &hostLoad{f: f, b: b, stop: stopFollow}, nil
}

type hostLoad struct {
	f    *loadgen.Follower
	b    *loadgen.Balanced
	stop context.CancelFunc
}

func (h *hostLoad) Targets() []Target { return h.f.Targets() }

func (h *hostLoad) Stop() ([]Record, []Change, error) {
	recs, err := h.b.Stop()
	h.stop()
	return recs, h.f.Changes(), err
}

// LoadPod is the name of the in-cluster load pod and of its ServiceAccount, Role and RoleBinding.
const LoadPod = "lastcall-loadgen"

// podLoad is the load running in a pod of the scenario's namespace: it follows the EndpointSlices with its own
// ServiceAccount (list/watch, nothing else) and streams its records as JSON lines to its log, which is read
// from here. Deleting the pod stops it (SIGTERM): the requests in flight finish and it writes "done".
type podLoad struct {
	env  *framework.Env
	ns   string
	mu   sync.Mutex
	recs []Record
	chs  []Change
	done chan error
}

func startPodLoad(ctx context.Context, env *framework.Env, ns, service string, propagation time.Duration, cfg LoadConfig) (*podLoad, error) {
	if len(cfg.Allowed) == 0 {
		return nil, errors.New("the in-cluster load needs the pod CIDR to restrict its targets (set E2E_POD_CIDR)")
	}
	var nets []string
	for _, p := range cfg.Allowed {
		nets = append(nets, p.String())
	}
	labels := map[string]string{"app": LoadPod}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: LoadPod, Labels: labels}}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: LoadPod, Labels: labels}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"},
	}}}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: LoadPod, Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: LoadPod},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: LoadPod, Namespace: ns}},
	}
	args := []string{"load", "-service", service, "-port", strconv.Itoa(cfg.Port),
		"-clients", strconv.Itoa(cfg.Clients), "-keepalive-clients", strconv.Itoa(cfg.KeepAliveClients),
		"-min-ms", strconv.Itoa(cfg.MinMs), "-max-ms", strconv.Itoa(cfg.MaxMs), "-path", cfg.PathTemplate,
		"-propagation", propagation.String(), "-timeout", cfg.Timeout.String(),
		"-max-requests", strconv.Itoa(cfg.MaxRequests), "-max-duration", cfg.MaxDuration.String(),
		"-allow", strings.Join(nets, ",")}
	grace := int64(cfg.Timeout/time.Second) + 15
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: LoadPod, Labels: labels,
			// The load is the observer, not a workload: lastcall must not change how it stops.
			Annotations: map[string]string{framework.LabelInject: "false"}},
		Spec: corev1.PodSpec{
			ServiceAccountName:            LoadPod,
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &grace,
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](65532),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{
				Name: "load", Image: framework.ImageTestapp, ImagePullPolicy: corev1.PullIfNotPresent, Args: args,
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
			}},
		},
	}
	cs := env.Client
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	if _, err := cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	if _, err := env.WaitForPodRunning(ctx, ns, LoadPod, 2*time.Minute); err != nil {
		return nil, err
	}
	logs, err := cs.CoreV1().Pods(ns).GetLogs(LoadPod, &corev1.PodLogOptions{Container: "load", Follow: true}).Stream(ctx)
	if err != nil {
		return nil, fmt.Errorf("following the load pod's log: %w", err)
	}
	p := &podLoad{env: env, ns: ns, done: make(chan error, 1)}
	go func() {
		defer logs.Close()
		p.done <- loadgen.ReadStream(logs, func(e loadgen.Event) {
			p.mu.Lock()
			defer p.mu.Unlock()
			switch e.Type {
			case loadgen.EventRecord:
				p.recs = append(p.recs, *e.Record)
			case loadgen.EventChange:
				p.chs = append(p.chs, *e.Change)
			}
		})
	}()
	return p, nil
}

func (p *podLoad) Targets() []Target {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.chs) == 0 {
		return nil
	}
	return p.chs[len(p.chs)-1].Targets
}

func (p *podLoad) Stop() ([]Record, []Change, error) {
	ctx := context.Background()
	err := p.env.Client.CoreV1().Pods(p.ns).Delete(ctx, LoadPod, metav1.DeleteOptions{})
	if err == nil {
		select {
		case err = <-p.done:
		case <-time.After(2 * time.Minute):
			err = errors.New("the load pod wrote no done line within 2 minutes of its deletion")
		}
	}
	if err != nil {
		err = fmt.Errorf("in-cluster load: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	sort.SliceStable(p.recs, func(i, j int) bool { return p.recs[i].Start.Before(p.recs[j].Start) })
	return p.recs, p.chs, err
}
