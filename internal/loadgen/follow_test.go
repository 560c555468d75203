package loadgen

import (
	"bytes"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/lastcall-dev/lastcall/internal/testenv"
)

func slice(name string, ready map[string]bool) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Port: ptr.To[int32](80)}},
	}
	for ip, r := range ready {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(r)}})
	}
	return es
}

// The follower against a real kube-apiserver: ready endpoints of the Service's slices only, every change
// applied after the propagation delay, never before. The apiserver refuses loopback endpoint addresses, so no
// request is sent here; the load over a followed Service runs in the e2e suite on a real cluster.
func TestFollowerAgainstAPIServer(t *testing.T) {
	cs := startAPIServer(t)
	ctx := t.Context()
	es := cs.DiscoveryV1().EndpointSlices("default")
	if _, err := es.Create(ctx, slice("web-a", map[string]bool{"10.244.0.1": true, "10.244.0.3": false}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	other := slice("other", map[string]bool{"10.244.0.4": true})
	other.Labels[discoveryv1.LabelServiceName] = "other"
	if _, err := es.Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const delay = 700 * time.Millisecond
	f := FollowEndpoints(ctx, cs, "default", "web", delay)
	waitTargets(t, f, "10.244.0.1")
	for _, c := range []struct {
		what string
		do   func() error
		want string
	}{
		{"a second slice", func() error {
			_, err := es.Create(ctx, slice("web-b", map[string]bool{"10.244.0.2": true}), metav1.CreateOptions{})
			return err
		}, "10.244.0.1,10.244.0.2"},
		{"an endpoint no longer ready", func() error {
			_, err := es.Update(ctx, slice("web-b", map[string]bool{"10.244.0.2": false}), metav1.UpdateOptions{})
			return err
		}, "10.244.0.1"},
		{"a deleted slice", func() error { return es.Delete(ctx, "web-a", metav1.DeleteOptions{}) }, ""},
	} {
		before := ips(f.Targets())
		changed := time.Now()
		if err := c.do(); err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		time.Sleep(delay / 2)
		if got := ips(f.Targets()); got != before {
			t.Fatalf("%s: targets %q only %v after the change; want the old %q until the %v delay has passed", c.what, got, delay/2, before, delay)
		}
		waitTargets(t, f, c.want)
		if ch := f.Changes(); ch[len(ch)-1].At.Sub(changed) < delay {
			t.Errorf("%s: applied %v after the change, want at least %v", c.what, ch[len(ch)-1].At.Sub(changed), delay)
		}
	}
}

// The in-cluster load stops with an error event, never sends to an address outside the allowed networks, and
// says why when the Service has no endpoint.
func TestServiceLoadErrors(t *testing.T) {
	cs := startAPIServer(t)
	ctx := t.Context()
	if _, err := cs.DiscoveryV1().EndpointSlices("default").Create(ctx, slice("web-x", map[string]bool{"192.0.2.10": true}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, service string
		want          string
	}{
		{"endpoint outside the allowed networks", "web", "not allowed"},
		{"no endpoints", "none", "no ready endpoints for service default/none"},
	} {
		var out syncBuffer
		err := ServiceLoad{Namespace: "default", Service: c.service, WaitForEndpoints: 2 * time.Second, Load: BalancedConfig{
			Port: 80, MaxRequests: 10, MaxDuration: 10 * time.Second, Allowed: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/24")},
		}}.Run(ctx, cs, NewStreamWriter(&out))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Run() = %v, want an error containing %q", c.name, err, c.want)
		}
		var recs int
		rerr := ReadStream(bytes.NewReader(out.Bytes()), func(e Event) {
			if e.Type == EventRecord {
				recs++
			}
		})
		if rerr == nil || !strings.Contains(rerr.Error(), c.want) || recs != 0 {
			t.Errorf("%s: the stream gave %v after %d records, want the error and none", c.name, rerr, recs)
		}
	}
}

func startAPIServer(t *testing.T) kubernetes.Interface {
	t.Helper()
	testenv.Check(t)
	env := testenv.Environment()
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Stop() })
	return kubernetes.NewForConfigOrDie(cfg)
}

func waitTargets(t *testing.T, f *Follower, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for ips(f.Targets()) != want {
		if time.Now().After(deadline) {
			t.Fatalf("targets %q, want %q (follower error: %v)", ips(f.Targets()), want, f.Err())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ips(ts []Target) string {
	var b bytes.Buffer
	for i, t := range ts {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(t.IP)
	}
	return b.String()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.b.Bytes()...)
}
