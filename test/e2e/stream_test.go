//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/lastcall-dev/lastcall/test/e2e/framework"
)

// A create stream is a steady, bounded flow of pod CREATEs into an opted-in namespace while a fault runs. The
// pods are bound to a node that does not exist, so nothing is scheduled or started: only admission is tested.
// Every CREATE is attributed to the phase that was current when it was sent.
const noSuchNode = "lastcall-chaos-no-such-node"

type createRec struct {
	phase    string
	latency  time.Duration
	err      error
	injected bool
}

type createStream struct {
	client   kubernetes.Interface
	ns       string
	phase    atomic.Pointer[string]
	mu       sync.Mutex
	recs     []createRec
	order    []string // phases in the order they started
	skipped  atomic.Int64
	stop     chan struct{}
	done     sync.WaitGroup
	stopOnce sync.Once
}

// startStream sends perSecond CREATEs per second (at most inFlight at once; a tick with none free is counted as
// skipped, so a slow API server lowers the rate instead of piling up requests) and deletes the created pods
// every few seconds. It stops at test end at the latest.
func startStream(t *testing.T, env *framework.Env, ns string, perSecond, inFlight int) *createStream {
	t.Helper()
	cfg := *env.Config
	cfg.QPS, cfg.Burst = float32(4*perSecond), 4*perSecond
	cs, err := kubernetes.NewForConfig(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &createStream{client: cs, ns: ns, stop: make(chan struct{})}
	s.setPhase("steady")
	s.done.Add(2)
	go s.send(perSecond, inFlight)
	go s.sweep()
	t.Cleanup(s.halt)
	return s
}

func (s *createStream) setPhase(p string) {
	s.mu.Lock()
	seen := false
	for _, o := range s.order {
		seen = seen || o == p
	}
	if !seen {
		s.order = append(s.order, p)
	}
	s.mu.Unlock()
	s.phase.Store(&p)
}

func (s *createStream) send(perSecond, inFlight int) {
	defer s.done.Done()
	slots := make(chan struct{}, inFlight)
	tick := time.NewTicker(time.Second / time.Duration(perSecond))
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		select {
		case slots <- struct{}{}:
		default:
			s.skipped.Add(1)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			s.createOne()
		}()
	}
}

func (s *createStream) createOne() {
	phase := *s.phase.Load()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "chaos-"},
		Spec: corev1.PodSpec{
			NodeName:                      noSuchNode,
			DNSPolicy:                     corev1.DNSDefault,
			TerminationGracePeriodSeconds: ptr.To(int64(1)),
			Containers:                    []corev1.Container{testappContainer("app")},
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t0 := time.Now()
	out, err := s.client.CoreV1().Pods(s.ns).Create(ctx, p, metav1.CreateOptions{})
	r := createRec{phase: phase, latency: time.Since(t0), err: err}
	if err == nil {
		r.injected = isInjected(out)
	}
	s.mu.Lock()
	s.recs = append(s.recs, r)
	s.mu.Unlock()
}

// sweep deletes the stream's pods every 5 s (grace 0: no kubelet will ever confirm them).
func (s *createStream) sweep() {
	defer s.done.Done()
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			s.deleteAll()
			return
		case <-t.C:
			s.deleteAll()
		}
	}
}

func (s *createStream) deleteAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = s.client.CoreV1().Pods(s.ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))},
		metav1.ListOptions{FieldSelector: "spec.nodeName=" + noSuchNode})
}

func (s *createStream) halt() {
	s.stopOnce.Do(func() { close(s.stop); s.done.Wait() })
}

// tally is what one phase cost.
type tally struct {
	Creates, Refused, Uninjected int
	Worst                        time.Duration
	FirstErr                     error
}

func (t tally) String() string {
	s := fmt.Sprintf("creates %4d  refused %3d  uninjected %3d  worst %6.2fs", t.Creates, t.Refused, t.Uninjected, t.Worst.Seconds())
	if t.FirstErr != nil {
		s += "  first error: " + firstLineOf(t.FirstErr.Error())
	}
	return s
}

func firstLineOf(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}

// tallies returns the phases in the order they started, with their counts.
func (s *createStream) tallies() ([]string, map[string]tally) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]tally{}
	for _, r := range s.recs {
		t := m[r.phase]
		t.Creates++
		switch {
		case r.err != nil:
			t.Refused++
			if t.FirstErr == nil {
				t.FirstErr = r.err
			}
		case !r.injected:
			t.Uninjected++
		}
		if r.latency > t.Worst {
			t.Worst = r.latency
		}
		m[r.phase] = t
	}
	return append([]string(nil), s.order...), m
}

func (s *createStream) report(t *testing.T, title string) ([]string, map[string]tally) {
	t.Helper()
	order, m := s.tallies()
	var b strings.Builder
	fmt.Fprintf(&b, "%s (skipped ticks: %d)\n", title, s.skipped.Load())
	for _, p := range order {
		fmt.Fprintf(&b, "  %-28s %s\n", p, m[p])
	}
	t.Log(b.String())
	return order, m
}

// fault runs fn as phase name, then keeps the phase for settle more seconds (CREATEs right after a fault
// belong to it), then returns to "steady".
func (s *createStream) fault(t *testing.T, name string, settle time.Duration, fn func(context.Context) error) {
	t.Helper()
	s.setPhase(name)
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	err := fn(ctx)
	time.Sleep(settle)
	s.setPhase("steady")
	framework.Logf("fault %s: %.1fs", name, time.Since(t0).Seconds())
	if err != nil {
		t.Fatalf("fault %s: %v", name, err)
	}
}

// lastcallPods returns the webhook's pods that are not terminating.
func lastcallPods(ctx context.Context, env *framework.Env) ([]corev1.Pod, error) {
	l, err := env.Client.CoreV1().Pods(framework.LastcallNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=lastcall"})
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// servedCertHash is the SHA-256 of the leaf certificate a webhook pod serves (see servedChain).
func servedCertHash(ctx context.Context, env *framework.Env, p corev1.Pod) (string, error) {
	certs, err := servedChain(ctx, env, p)
	if err != nil {
		return "", err
	}
	return certHash(certs[0].Raw), nil
}

// servedChain is the certificate chain of the leaf certificate a webhook pod serves on 9443 (only where the pod
// network is reachable from here, and only inside it).
func servedChain(ctx context.Context, env *framework.Env, p corev1.Pod) ([]*x509.Certificate, error) {
	if err := env.CheckTarget(p.Status.PodIP); err != nil {
		return nil, err
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 3 * time.Second}, Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // only reads the certificate
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(p.Status.PodIP, "9443"))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	certs := c.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, fmt.Errorf("pod %s served no certificate", p.Name)
	}
	return certs, nil
}

func certHash(der []byte) string {
	h := sha256.Sum256(der)
	return hex.EncodeToString(h[:8])
}
