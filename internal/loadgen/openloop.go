package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Overload is an arrival the open-loop load did not send because MaxInFlight requests were already waiting:
// recorded (and counted as a failure) rather than queued, so the arrival rate stays what was asked for.
const Overload Kind = "client-overload"

// Class is one kind of request of a mix: its share of the arrivals and the range of work it asks the server
// for (ms, uniform in [MinMs, MaxMs]).
type Class struct {
	Name         string
	Weight       int
	MinMs, MaxMs int
}

// Mix is the set of request classes of an open-loop load, e.g. 80% short and 20% slow requests.
type Mix []Class

// ShortAndSlow is the mix of the ingress scenarios: 80% short requests (20-100 ms) and 20% slow ones (1-3 s),
// roughly what a web application behind an ingress serves (pages and API calls next to reports and uploads).
var ShortAndSlow = Mix{{Name: "short", Weight: 80, MinMs: 20, MaxMs: 100}, {Name: "slow", Weight: 20, MinMs: 1000, MaxMs: 3000}}

// Validate reports the first class that cannot be used.
func (m Mix) Validate() error {
	if len(m) == 0 {
		return errors.New("loadgen: the request mix is empty")
	}
	total := 0
	for i, c := range m {
		if c.Weight <= 0 || c.MinMs < 0 || c.MaxMs < c.MinMs {
			return fmt.Errorf("loadgen: mix class %d (%q): weight %d, ms %d..%d: want weight > 0 and 0 <= min <= max", i, c.Name, c.Weight, c.MinMs, c.MaxMs)
		}
		total += c.Weight
	}
	if total <= 0 {
		return errors.New("loadgen: the mix's weights add up to 0")
	}
	return nil
}

// pick draws a class by weight and a duration inside its range.
func (m Mix) pick(r *rand.Rand) (string, int) {
	total := 0
	for _, c := range m {
		total += c.Weight
	}
	n := r.IntN(total)
	for _, c := range m {
		if n < c.Weight {
			return c.Name, c.MinMs + r.IntN(c.MaxMs-c.MinMs+1)
		}
		n -= c.Weight
	}
	panic("unreachable: weights validated")
}

// OpenLoopConfig describes an open-loop load: requests arrive at a constant rate whatever the server does, the
// way users arrive at a site, so a slow or failing backend does not slow the load down (a closed-loop client,
// which waits for each answer, sends less exactly when things go wrong and hides failures).
type OpenLoopConfig struct {
	Target  string         // "IP:port" of the ingress; loopback or inside Allowed, names are never resolved
	Allowed []netip.Prefix // networks allowed besides loopback (the test cluster's pod CIDR)
	Host    string         // Host header (the Ingress rule's host); Target when empty
	Rate    float64        // arrivals per second (required)
	Mix     Mix            // request classes; each request asks for PathTemplate with its duration in ms
	// PathTemplate is the request path with one %d for the duration in ms ("/slow?ms=%d").
	PathTemplate string
	// KeepAlive is the share (0..1) of requests sent on kept-alive connections: each takes an idle connection
	// of the pool (Result.Reused) or opens one and returns it after a complete response, like a browser or an
	// API client. The others open a fresh connection and send Connection: close.
	KeepAlive   float64
	Timeout     time.Duration // per request, connect included (15 s when zero)
	MaxRequests int           // hard bound on arrivals (required)
	MaxDuration time.Duration // hard bound on the run (required)
	MaxInFlight int           // arrivals beyond this many waiting requests are recorded as Overload (4096 when zero)
	Seed        uint64        // of the class, duration and connection draws; the same seed gives the same schedule
}

// OpenLoop is a running open-loop load.
type OpenLoop struct {
	cfg     OpenLoopConfig
	addr    string
	cancel  context.CancelFunc
	wg      sync.WaitGroup // in-flight requests
	sched   chan struct{}  // closed when the scheduler has stopped
	issued  atomic.Int64
	pool    idlePool
	mu      sync.Mutex
	results []Result
	started time.Time
}

// StartOpenLoop checks the target and the bounds and starts the arrivals. Nothing is ever retried: every
// request's outcome, with the status the server returned, is in the results.
func StartOpenLoop(ctx context.Context, cfg OpenLoopConfig) (*OpenLoop, error) {
	ap, err := CheckTarget(cfg.Target, cfg.Allowed)
	if err != nil {
		return nil, err
	}
	if cfg.Rate <= 0 || cfg.MaxRequests <= 0 || cfg.MaxDuration <= 0 {
		return nil, fmt.Errorf("loadgen: an open-loop load needs Rate (%v), MaxRequests (%d) and MaxDuration (%v) > 0", cfg.Rate, cfg.MaxRequests, cfg.MaxDuration)
	}
	if cfg.KeepAlive < 0 || cfg.KeepAlive > 1 {
		return nil, fmt.Errorf("loadgen: KeepAlive %v: want a share in 0..1", cfg.KeepAlive)
	}
	if err := cfg.Mix.Validate(); err != nil {
		return nil, err
	}
	if strings.Count(cfg.PathTemplate, "%d") != 1 || strings.Count(cfg.PathTemplate, "%") != 1 {
		return nil, fmt.Errorf("loadgen: PathTemplate %q: want exactly one %%d (the duration in ms)", cfg.PathTemplate)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 4096
	}
	if cfg.Host == "" {
		cfg.Host = cfg.Target
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.MaxDuration)
	o := &OpenLoop{cfg: cfg, addr: ap.String(), cancel: cancel, sched: make(chan struct{}), started: time.Now()}
	go o.schedule(ctx)
	return o, nil
}

// schedule starts arrival i at started + i/Rate. When it falls behind (a slow machine) it sends the late
// arrivals at once rather than dropping them, so the count stays Rate per second on average.
func (o *OpenLoop) schedule(ctx context.Context) {
	defer close(o.sched)
	r := rand.New(rand.NewPCG(o.cfg.Seed, 0x6c617374))
	slots := make(chan struct{}, o.cfg.MaxInFlight)
	interval := float64(time.Second) / o.cfg.Rate
	for i := 0; i < o.cfg.MaxRequests; i++ {
		at := o.started.Add(time.Duration(float64(i) * interval))
		if d := time.Until(at); d > 0 {
			sleepCtx(ctx, d)
		}
		if ctx.Err() != nil {
			return
		}
		class, ms := o.cfg.Mix.pick(r)
		keep := r.Float64() < o.cfg.KeepAlive
		o.issued.Add(1)
		select {
		case slots <- struct{}{}:
		default:
			now := time.Now()
			o.add(Result{Client: i, Start: now, End: now, Kind: Overload, Class: class, Err: fmt.Sprintf("%d requests already in flight", o.cfg.MaxInFlight)})
			continue
		}
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			defer func() { <-slots }()
			o.add(o.send(ctx, i, class, ms, keep))
		}()
	}
}

// send performs one request on a pooled or a fresh connection and never retries it.
func (o *OpenLoop) send(ctx context.Context, i int, class string, ms int, keep bool) Result {
	c := &conn{}
	if keep {
		if idle := o.pool.get(); idle != nil {
			c = idle
		}
	}
	// In-flight requests are not cancelled by Stop or the bound: they finish or time out, as a user's would.
	res := c.roundTrip(context.WithoutCancel(ctx), request{addr: o.addr, path: fmt.Sprintf(o.cfg.PathTemplate, ms),
		host: o.cfg.Host, keepAlive: keep, timeout: o.cfg.Timeout})
	if keep && c.open() {
		o.pool.put(c)
	} else {
		c.close()
	}
	res.Client, res.Class = i, class
	return res
}

func (o *OpenLoop) add(r Result) {
	o.mu.Lock()
	o.results = append(o.results, r)
	o.mu.Unlock()
}

// Issued is how many arrivals have been scheduled so far (sent or recorded as Overload).
func (o *OpenLoop) Issued() int { return int(o.issued.Load()) }

// Done is closed when no further arrival will be scheduled: MaxRequests or MaxDuration reached, or Stop.
func (o *OpenLoop) Done() <-chan struct{} { return o.sched }

// Stop schedules no new arrival, waits for the requests in flight (each bounded by Timeout), closes the idle
// connections and returns every result ordered by start.
func (o *OpenLoop) Stop() []Result {
	o.cancel()
	<-o.sched
	o.wg.Wait()
	o.pool.closeAll()
	o.mu.Lock()
	defer o.mu.Unlock()
	sort.SliceStable(o.results, func(i, j int) bool { return o.results[i].Start.Before(o.results[j].Start) })
	return append([]Result(nil), o.results...)
}

// idlePool holds the kept-alive connections between requests. Last in, first out: like a browser's pool, the
// most recently used connection is reused first.
type idlePool struct {
	mu    sync.Mutex
	conns []*conn
}

func (p *idlePool) get() *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.conns) == 0 {
		return nil
	}
	c := p.conns[len(p.conns)-1]
	p.conns = p.conns[:len(p.conns)-1]
	return c
}

func (p *idlePool) put(c *conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

func (p *idlePool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.close()
	}
	p.conns = nil
}

// Outcome names a result the way an ingress's user sees it: "ok", the 5xx or 4xx status the server returned
// ("502", "503", "504", ...), or the connection-level kind ("reset", "eof", "timeout", "connect-refused", ...).
func (r Result) Outcome() string {
	switch r.Kind {
	case Status5xx, Status4xx:
		if r.Status != 0 {
			return fmt.Sprint(r.Status)
		}
	}
	return string(r.Kind)
}
