package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
)

// Event is one line of a load's JSON-lines stream. The in-cluster load pod (testapp load) writes them to its
// stdout, and the test or demo outside the cluster reads them from the pod's log: that is how a cluster whose
// pod network the host cannot reach (kind, an existing cluster) still gets every record.
type Event struct {
	Type     string  `json:"type"` // EventChange, EventRecord, EventDone or EventError
	Change   *Change `json:"change,omitempty"`
	Record   *Record `json:"record,omitempty"`
	Requests int     `json:"requests,omitempty"` // done: records written before it, to detect a lost line
	Error    string  `json:"error,omitempty"`
}

// Event types.
const (
	EventChange = "change" // the follower's targets changed
	EventRecord = "record" // one request ended
	EventDone   = "done"   // the load stopped; every record was written
	EventError  = "error"  // the load stopped early (refused target, no endpoints, API errors)
)

// StreamWriter writes events as JSON lines; safe for concurrent use.
type StreamWriter struct {
	mu      sync.Mutex
	enc     *json.Encoder
	records int
	err     error
}

// NewStreamWriter returns a writer of events to w.
func NewStreamWriter(w io.Writer) *StreamWriter { return &StreamWriter{enc: json.NewEncoder(w)} }

// Write writes one event; the first write error is kept and returned by every later call.
func (s *StreamWriter) Write(e Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if e.Type == EventDone {
		e.Requests = s.records
	}
	if s.err = s.enc.Encode(e); s.err == nil && e.Type == EventRecord {
		s.records++
	}
	return s.err
}

// ReadStream calls fn for every event in r until a done or error event or the end of r. It fails on a line
// that is not an event, on a stream that ends without a done event, and when done counts other records than
// were read: records are never lost silently.
func ReadStream(r io.Reader, fn func(Event)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	records, line := 0, 0
	for sc.Scan() {
		line++
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("load stream line %d: not an event: %w", line, err)
		}
		switch e.Type {
		case EventRecord:
			if e.Record == nil {
				return fmt.Errorf("load stream line %d: record event without a record", line)
			}
			records++
		case EventChange:
			if e.Change == nil {
				return fmt.Errorf("load stream line %d: change event without a change", line)
			}
		case EventDone:
			fn(e)
			if e.Requests != records {
				return fmt.Errorf("load stream: done says %d records, %d were read", e.Requests, records)
			}
			return nil
		case EventError:
			fn(e)
			return fmt.Errorf("load stopped: %s", e.Error)
		default:
			return fmt.Errorf("load stream line %d: unknown event type %q", line, e.Type)
		}
		fn(e)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("load stream after %d lines: %w", line, err)
	}
	return fmt.Errorf("load stream ended after %d lines without a done event", line)
}

// ServiceLoad is what `testapp load` runs inside the cluster: follow a Service's EndpointSlices and load its
// endpoints until ctx ends or a bound is reached, streaming every change and record.
type ServiceLoad struct {
	Namespace, Service string
	Propagation        time.Duration // the follower's delay (like kube-proxy or an ingress learning about a change)
	WaitForEndpoints   time.Duration // give up when no endpoint appeared by then (1 min when zero)
	Load               BalancedConfig
}

// Run streams the load to w. It returns after the done event, or with the error it also wrote as an error event.
func (s ServiceLoad) Run(ctx context.Context, cs kubernetes.Interface, w *StreamWriter) error {
	err := s.run(ctx, cs, w)
	if err != nil {
		w.Write(Event{Type: EventError, Error: err.Error()})
		return err
	}
	return w.Write(Event{Type: EventDone})
}

func (s ServiceLoad) run(ctx context.Context, cs kubernetes.Interface, w *StreamWriter) error {
	if s.Namespace == "" || s.Service == "" {
		return errors.New("a namespace and a service are required")
	}
	if s.WaitForEndpoints <= 0 {
		s.WaitForEndpoints = time.Minute
	}
	fctx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	f := FollowEndpoints(fctx, cs, s.Namespace, s.Service, s.Propagation)
	sent := 0
	emitChanges := func() error {
		ch := f.Changes()
		for ; sent < len(ch); sent++ {
			if err := w.Write(Event{Type: EventChange, Change: &ch[sent]}); err != nil {
				return err
			}
		}
		return nil
	}
	deadline := time.Now().Add(s.WaitForEndpoints)
	for len(f.Targets()) == 0 {
		if ctx.Err() != nil {
			return nil
		}
		if time.Now().After(deadline) {
			if err := f.Err(); err != nil {
				return fmt.Errorf("no endpoints for service %s/%s after %v: %w", s.Namespace, s.Service, s.WaitForEndpoints, err)
			}
			return fmt.Errorf("no ready endpoints for service %s/%s after %v", s.Namespace, s.Service, s.WaitForEndpoints)
		}
		sleepCtx(ctx, 50*time.Millisecond)
	}
	cfg := s.Load
	cfg.OnRecord = func(r Record) { w.Write(Event{Type: EventRecord, Record: &r}) }
	b, err := StartBalanced(ctx, f, cfg)
	if err != nil {
		return err
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for running := true; running; {
		if err := emitChanges(); err != nil {
			b.Stop()
			return err
		}
		select {
		case <-ctx.Done():
			running = false
		case <-b.Done():
			running = false
		case <-tick.C:
		}
	}
	_, err = b.Stop()
	if err2 := emitChanges(); err == nil {
		err = err2
	}
	return err
}

// ParsePrefixes parses comma-separated CIDRs (flag values), naming the bad one.
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("allowed network %q: %w", s, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
