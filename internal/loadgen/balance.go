package loadgen

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// BalancedConfig bounds a load that spreads requests over a Service's ready endpoints the way an ingress
// controller or kube-proxy does: round robin over the targets it knows, which lag the API by the Follower's
// propagation delay.
type BalancedConfig struct {
	Port    int // the pods' port
	Clients int // concurrent sequential clients (1 when zero)
	// KeepAliveClients of the Clients keep one connection per endpoint between requests, like an ingress's
	// upstream keep-alive pool: a connection whose endpoint left the target set is closed, never reused. The
	// others open a fresh connection for every request (Connection: close).
	KeepAliveClients int
	Path             func() string // the request path, "/" when nil; called once per request
	Host             string        // Host header, the target address when empty
	Timeout          time.Duration // per request, connect included (10 s when zero)
	MaxRequests      int           // hard bound on requests over all clients (required)
	MaxDuration      time.Duration // hard bound on the run (required)
	Allowed          []netip.Prefix
	// OnRecord, when set, is called with every record as it completes (from the clients' goroutines).
	OnRecord func(Record)
}

// Record is one request of a balanced load: its result and the endpoint it was sent to.
type Record struct {
	Result
	Target
}

// Balanced is a running endpoint-following load.
type Balanced struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	records []Record
	err     error
	done    chan struct{}
}

// StartBalanced starts the clients. Requests go only to targets eps returns, each checked by CheckTarget
// against loopback and cfg.Allowed: the first refused target stops the whole load with an error. Nothing is
// ever retried, so every failure a real client would see is recorded.
func StartBalanced(ctx context.Context, eps Endpoints, cfg BalancedConfig) (*Balanced, error) {
	if cfg.MaxRequests <= 0 || cfg.MaxDuration <= 0 {
		return nil, errors.New("loadgen: a balanced load needs MaxRequests and MaxDuration")
	}
	if cfg.Port <= 0 || cfg.Port > 65535 {
		return nil, errors.New("loadgen: Port must be 1..65535")
	}
	if cfg.Clients <= 0 {
		cfg.Clients = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Path == nil {
		cfg.Path = func() string { return "/" }
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.MaxDuration)
	b := &Balanced{cancel: cancel, done: make(chan struct{})}
	var issued, rr atomic.Int64
	for i := range cfg.Clients {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			bc := balancedClient{id: i, cfg: &cfg, keepAlive: i < cfg.KeepAliveClients, pool: map[string]*conn{}}
			defer bc.closeAll()
			for ctx.Err() == nil {
				ts := eps.Targets()
				bc.forget(ts)
				if len(ts) == 0 {
					sleepCtx(ctx, 50*time.Millisecond)
					continue
				}
				if issued.Add(1) > int64(cfg.MaxRequests) {
					return
				}
				t := ts[int(rr.Add(1)-1)%len(ts)]
				rec, err := bc.send(ctx, t)
				if err != nil {
					b.fail(err)
					return
				}
				b.add(rec)
			}
		}()
	}
	go func() {
		b.wg.Wait()
		close(b.done)
	}()
	return b, nil
}

// Done is closed when every client has stopped: after Stop, or by itself when a bound was reached.
func (b *Balanced) Done() <-chan struct{} { return b.done }

func (b *Balanced) add(rec Record) {
	b.mu.Lock()
	b.records = append(b.records, rec)
	b.mu.Unlock()
}

func (b *Balanced) fail(err error) {
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.mu.Unlock()
	b.cancel()
}

// Stop starts no new request, lets those in flight finish (each is bounded by Timeout) and returns every
// record, ordered by start, and the first refused target, if any.
func (b *Balanced) Stop() ([]Record, error) {
	b.cancel()
	b.wg.Wait()
	b.mu.Lock()
	defer b.mu.Unlock()
	sort.SliceStable(b.records, func(i, j int) bool { return b.records[i].Start.Before(b.records[j].Start) })
	return b.records, b.err
}

// balancedClient is one sequential client. With keepAlive it holds at most one connection per endpoint.
type balancedClient struct {
	id        int
	cfg       *BalancedConfig
	keepAlive bool
	pool      map[string]*conn // by target IP
}

// forget closes the kept connections to endpoints that are no longer targets: a load balancer stops using an
// endpoint it no longer has, it does not keep sending on old connections.
func (bc *balancedClient) forget(ts []Target) {
	for ip, c := range bc.pool {
		keep := false
		for _, t := range ts {
			keep = keep || t.IP == ip
		}
		if !keep {
			c.close()
			delete(bc.pool, ip)
		}
	}
}

func (bc *balancedClient) closeAll() { bc.forget(nil) }

func (bc *balancedClient) send(ctx context.Context, t Target) (Record, error) {
	target := net.JoinHostPort(t.IP, strconv.Itoa(bc.cfg.Port))
	ap, err := CheckTarget(target, bc.cfg.Allowed)
	if err != nil {
		return Record{}, err
	}
	c := &conn{}
	if bc.keepAlive {
		if bc.pool[t.IP] == nil {
			bc.pool[t.IP] = c
		}
		c = bc.pool[t.IP]
	}
	host := bc.cfg.Host
	if host == "" {
		host = target
	}
	// In-flight requests are not cancelled by Stop: they finish or time out, as a real client's would.
	res := c.roundTrip(context.WithoutCancel(ctx), request{addr: ap.String(), path: bc.cfg.Path(), host: host, keepAlive: bc.keepAlive, timeout: bc.cfg.Timeout})
	if !bc.keepAlive {
		c.close()
	}
	res.Client = bc.id
	rec := Record{Result: res, Target: t}
	if bc.cfg.OnRecord != nil {
		bc.cfg.OnRecord(rec)
	}
	return rec, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Static is a fixed, replaceable set of targets (Endpoints for tests and for a single address).
type Static struct {
	mu sync.Mutex
	ts []Target
}

// Set replaces the targets.
func (s *Static) Set(ts ...Target) {
	s.mu.Lock()
	s.ts = append([]Target(nil), ts...)
	s.mu.Unlock()
}

// Targets returns the current targets.
func (s *Static) Targets() []Target {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Target(nil), s.ts...)
}
