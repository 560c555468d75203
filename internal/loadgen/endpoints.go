package loadgen

import (
	"context"
	"sort"
	"sync"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// Target is one ready endpoint of a Service: a pod IP and the pod behind it.
type Target struct {
	IP  string `json:"ip"`
	Pod string `json:"pod,omitempty"`
}

// Endpoints is where an endpoint-following load gets its targets: a Follower, or a fixed set in tests.
type Endpoints interface {
	// Targets returns the endpoints the load may use now.
	Targets() []Target
}

// Follower keeps the Service's ready endpoints like kube-proxy or an ingress controller does: it watches the
// EndpointSlices and applies every change only after a propagation delay (the time real load balancers take
// to learn about it).
type Follower struct {
	delay time.Duration

	mu      sync.Mutex
	slices  map[string][]Target // by EndpointSlice name, as the apiserver has them now
	seq     int                 // changes seen
	applied int                 // the change the current targets come from
	targets []Target            // what the client uses: the apiserver's view, delay ago
	log     []Change
	err     error // the last List or Watch error, nil after a successful List
}

// Change is one update of the follower's targets.
type Change struct {
	At      time.Time `json:"at"`
	Targets []Target  `json:"targets"`
}

// FollowEndpoints watches the EndpointSlices of service in ns until ctx ends.
func FollowEndpoints(ctx context.Context, cs kubernetes.Interface, ns, service string, delay time.Duration) *Follower {
	f := &Follower{delay: delay, slices: map[string][]Target{}}
	go f.run(ctx, cs, ns, service)
	return f
}

func (f *Follower) run(ctx context.Context, cs kubernetes.Interface, ns, service string) {
	sel := metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + service}
	for ctx.Err() == nil {
		list, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, sel)
		f.mu.Lock()
		f.err = err
		f.mu.Unlock()
		if err != nil {
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		}
		f.mu.Lock()
		f.slices = map[string][]Target{}
		f.mu.Unlock()
		for i := range list.Items {
			f.update(&list.Items[i], false)
		}
		opts := sel
		opts.ResourceVersion = list.ResourceVersion
		w, err := cs.DiscoveryV1().EndpointSlices(ns).Watch(ctx, opts)
		if err != nil {
			f.mu.Lock()
			f.err = err
			f.mu.Unlock()
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		}
		for ev := range w.ResultChan() {
			es, ok := ev.Object.(*discoveryv1.EndpointSlice)
			if !ok {
				continue
			}
			f.update(es, ev.Type == watch.Deleted)
		}
		w.Stop()
	}
}

func (f *Follower) update(es *discoveryv1.EndpointSlice, deleted bool) {
	var ts []Target
	if !deleted {
		for _, ep := range es.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			pod := ""
			if ep.TargetRef != nil {
				pod = ep.TargetRef.Name
			}
			for _, a := range ep.Addresses {
				ts = append(ts, Target{IP: a, Pod: pod})
			}
		}
	}
	f.mu.Lock()
	if deleted {
		delete(f.slices, es.Name)
	} else {
		f.slices[es.Name] = ts
	}
	f.seq++
	seq := f.seq
	var all []Target
	for _, s := range f.slices {
		all = append(all, s...)
	}
	f.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].IP < all[j].IP })
	apply := func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if seq > f.applied {
			f.applied, f.targets = seq, all
			f.log = append(f.log, Change{At: time.Now(), Targets: all})
		}
	}
	if f.delay <= 0 {
		apply()
	} else {
		time.AfterFunc(f.delay, apply)
	}
}

// Targets returns the current targets.
func (f *Follower) Targets() []Target {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Target(nil), f.targets...)
}

// Err returns the last error listing or watching the EndpointSlices (e.g. missing RBAC), nil once a List
// succeeded again. The follower keeps retrying.
func (f *Follower) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Changes returns every update of the targets so far.
func (f *Follower) Changes() []Change {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Change(nil), f.log...)
}
