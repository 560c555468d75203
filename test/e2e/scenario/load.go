//go:build e2e

package scenario

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/lastcall-dev/lastcall/internal/loadgen"
)

// LoadConfig bounds the endpoint-following load.
type LoadConfig struct {
	Clients      int            // concurrent clients (4)
	MinMs, MaxMs int            // each request asks for /slow?ms=N, N uniform in [MinMs, MaxMs] (1000..3000)
	Port         int            // the pods' port (80)
	Timeout      time.Duration  // per request (15 s)
	MaxRequests  int            // hard bound on requests (5000)
	MaxDuration  time.Duration  // hard bound on the run (5 min)
	Allowed      []netip.Prefix // networks the targets must be in besides loopback: the cluster's pod CIDR only
	PathTemplate string         // "/slow?ms=%d"
}

func (c *LoadConfig) defaults() {
	if c.Clients <= 0 {
		c.Clients = 4
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

// Record is one request: loadgen's result plus the endpoint it was sent to.
type Record struct {
	loadgen.Result
	Target
}

// Load sends requests until Stop is called or a bound is reached. Every request goes on a fresh raw HTTP/1.1
// connection (loadgen, never retried) to a pod IP the Follower currently has; loadgen refuses any address
// outside loopback and Allowed.
type Load struct {
	cfg     LoadConfig
	f       *Follower
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	records []Record
	err     error
}

// StartLoad starts the clients.
func StartLoad(ctx context.Context, f *Follower, cfg LoadConfig) *Load {
	cfg.defaults()
	ctx, cancel := context.WithTimeout(ctx, cfg.MaxDuration)
	l := &Load{cfg: cfg, f: f, cancel: cancel}
	var issued sync.Mutex
	n := 0
	next := func() bool {
		issued.Lock()
		defer issued.Unlock()
		n++
		return n <= cfg.MaxRequests
	}
	for i := range cfg.Clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				t, ok := f.Pick()
				if !ok {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				if !next() {
					return
				}
				ms := cfg.MinMs + rand.IntN(cfg.MaxMs-cfg.MinMs+1)
				rep, err := loadgen.Run(context.WithoutCancel(ctx), loadgen.Config{
					Target:   net.JoinHostPort(t.IP, strconv.Itoa(cfg.Port)),
					Allowed:  cfg.Allowed,
					Path:     fmt.Sprintf(cfg.PathTemplate, ms),
					Requests: 1,
					Timeout:  cfg.Timeout,
				})
				l.mu.Lock()
				if err != nil {
					l.err = err
					l.mu.Unlock()
					cancel()
					return
				}
				for _, r := range rep.Results {
					r.Client = i
					l.records = append(l.records, Record{Result: r, Target: t})
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// Stop lets the requests in flight finish and returns every record, ordered by start, and the first refused
// target, if any.
func (l *Load) Stop() ([]Record, error) {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	sort.SliceStable(l.records, func(i, j int) bool { return l.records[i].Start.Before(l.records[j].Start) })
	return l.records, l.err
}
