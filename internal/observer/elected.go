package observer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Election configures the observer's leader election (a Lease in the webhook's namespace).
type Election struct {
	Namespace, Name string
	// Identity names this replica in the Lease's holderIdentity: "<pod name>_<random>", so `lastcall status`
	// can find the pod that holds the data. Default: hostname_random.
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod default to 15s, 10s and 2s (client-go's usual values).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// Elected runs an Observer on the replica that holds the Lease. It is added to the manager as a Runnable that
// does NOT need the manager's leader election: controller-runtime stops the whole manager (and with it the
// webhook server on that replica) when it loses its lease, and a lost lease must cost shutdown telemetry at
// most, never admission. This runnable campaigns again after losing the lease, and releases it on shutdown
// only after the observer has stopped, so two replicas never observe at once.
type Elected struct {
	Observer *Observer
	Election Election
	Client   kubernetes.Interface
	Log      logr.Logger
}

// NewForConfig builds the observer of managed pods and its election from a rest config. Pods are read as
// protobuf, the cheapest encoding to decode.
func NewForConfig(cfg *rest.Config, e Election, o Options) (*Elected, error) {
	pc := rest.CopyConfig(cfg)
	pc.ContentType = "application/vnd.kubernetes.protobuf"
	pc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	pods, err := kubernetes.NewForConfig(pc)
	if err != nil {
		return nil, fmt.Errorf("observer client: %w", err)
	}
	if o.Events == nil {
		o.Events = ClientEvents{Client: pods}
	}
	return &Elected{Observer: New(PodListWatch(pods), o), Election: e, Client: pods, Log: o.Log}, nil
}

// ClientEvents creates events through a clientset.
type ClientEvents struct{ Client kubernetes.Interface }

// CreateEvent implements EventSink.
func (c ClientEvents) CreateEvent(ctx context.Context, ev *corev1.Event) error {
	_, err := c.Client.CoreV1().Events(ev.Namespace).Create(ctx, ev, metav1.CreateOptions{})
	return err
}

// NeedLeaderElection: see Elected; the election is the runnable's own.
func (e *Elected) NeedLeaderElection() bool { return false }

// Identity returns this replica's default election identity.
func Identity() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return host + "_" + hex.EncodeToString(b)
}

// Start campaigns for the Lease until ctx ends, observing while it leads.
func (e *Elected) Start(ctx context.Context) error {
	el := e.Election
	if el.Identity == "" {
		el.Identity = Identity()
	}
	if el.LeaseDuration == 0 {
		el.LeaseDuration, el.RenewDeadline, el.RetryPeriod = 15*time.Second, 10*time.Second, 2*time.Second
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: el.Namespace, Name: el.Name},
		Client:     e.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: el.Identity},
	}
	for ctx.Err() == nil {
		e.term(ctx, lock, el)
		select {
		case <-ctx.Done():
		case <-time.After(el.RetryPeriod):
		}
	}
	return nil
}

// term is one campaign: wait for the Lease, observe while holding it, return when it is lost or ctx ends.
func (e *Elected) term(ctx context.Context, lock resourcelock.Interface, el Election) {
	// The elector's context ends only after the observer has stopped: with ReleaseOnCancel the Lease is
	// released when it ends, and another replica must not start observing while this one still does.
	ectx, cancelElector := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelElector()
	var (
		mu      sync.Mutex
		leading bool
		done    = make(chan struct{})
	)
	stopWaiting := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		// Still campaigning when ctx ends: there is no observer to wait for.
		if !leading {
			cancelElector()
		}
	})
	defer stopWaiting()
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, Name: el.Name,
		LeaseDuration: el.LeaseDuration, RenewDeadline: el.RenewDeadline, RetryPeriod: el.RetryPeriod,
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				// client-go starts this in a goroutine that may run after Run returned (lctx has ended
				// then): the check under mu makes the wait below see either a leader or none at all.
				mu.Lock()
				if lctx.Err() != nil || ctx.Err() != nil {
					mu.Unlock()
					cancelElector()
					return
				}
				leading = true
				mu.Unlock()
				defer close(done)
				octx, cancel := context.WithCancel(lctx)
				defer cancel()
				stop := context.AfterFunc(ctx, cancel)
				defer stop()
				e.Log.Info("observer leading", "identity", el.Identity, "lease", el.Namespace+"/"+el.Name)
				if err := e.Observer.Start(octx); err != nil {
					e.Log.Error(err, "observer stopped")
				}
				// Stopped because ctx ended (not because the lease was lost): release the lease now.
				if ctx.Err() != nil {
					cancelElector()
				}
			},
			OnStoppedLeading: func() {
				if ctx.Err() == nil {
					e.Log.Info("observer lost its lease; campaigning again (admission is not affected)", "identity", el.Identity)
				}
			},
		},
	})
	if err != nil {
		e.Log.Error(err, "observer leader election")
		return
	}
	le.Run(ectx)
	// Run returns as soon as the lease is lost or released; the observer may still be stopping.
	mu.Lock()
	wait := leading
	mu.Unlock()
	if wait {
		<-done
	}
}
