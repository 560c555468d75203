// Package loadgen is a small raw HTTP/1.1 load generator for tests and demos that must see every failure.
//
// It writes requests on raw connections and parses responses with http.ReadResponse. It never uses
// net/http.Client, which silently retries idempotent requests on reused connections that the server closed:
// exactly the failures a graceful-shutdown test has to count. Each request is recorded with its start, end and
// failure kind. Targets are restricted to loopback and CIDRs the caller allows, so a test can never load
// anything else (see CheckTarget).
package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Kind classifies a request's outcome.
type Kind string

// Outcomes. Connect errors, resets and EOFs are what a server that stops abruptly produces.
const (
	OK             Kind = "ok"
	ConnectRefused Kind = "connect-refused"
	Reset          Kind = "reset"
	EOF            Kind = "eof" // connection closed before a complete response
	Status5xx      Kind = "status-5xx"
	Status4xx      Kind = "status-4xx"
	Timeout        Kind = "timeout"
	Other          Kind = "other"
)

// Config describes one run. At least one of Requests and Duration must bound it.
type Config struct {
	Target    string         // "IP:port"; "localhost:port" means 127.0.0.1. Hostnames are never resolved.
	Allowed   []netip.Prefix // networks allowed besides loopback, e.g. a test cluster's pod CIDR
	Path      string         // request path, "/" when empty
	Host      string         // Host header, Target when empty
	Clients   int            // concurrent clients, 1 when zero
	Requests  int            // total requests over all clients; 0: bounded by Duration only
	Duration  time.Duration  // no new request starts after this; 0: bounded by Requests only
	KeepAlive bool           // reuse connections (until the server says Connection: close); else one per request
	Timeout   time.Duration  // per request, connect included; 10s when zero
}

// Result is one request.
type Result struct {
	Client int       `json:"client"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	Kind   Kind      `json:"kind"`
	Status int       `json:"status,omitempty"` // HTTP status when a response was read
	Reused bool      `json:"reused,omitempty"` // sent on a kept-alive connection
	Err    string    `json:"err,omitempty"`    // the error text for failures
	Class  string    `json:"class,omitempty"`  // the request's class in an open-loop mix ("short", "slow")
}

// Duration is how long the request took, from dialling or sending to its end.
func (r Result) Duration() time.Duration { return r.End.Sub(r.Start) }

// Succeeded tells whether the request ended OK.
func (r Result) Succeeded() bool { return r.Kind == OK }

// Report holds every request of a run, ordered by start time.
type Report struct {
	Results []Result
}

// Count returns how many requests ended with kind k.
func (r *Report) Count(k Kind) int {
	n := 0
	for _, res := range r.Results {
		if res.Kind == k {
			n++
		}
	}
	return n
}

// Failures returns the requests that did not end OK.
func (r *Report) Failures() []Result {
	var out []Result
	for _, res := range r.Results {
		if res.Kind != OK {
			out = append(out, res)
		}
	}
	return out
}

// InFlight returns the requests that started before at and ended after it: the ones a shutdown signal at that
// moment must let finish.
func (r *Report) InFlight(at time.Time) *Report {
	return r.filter(func(res Result) bool { return res.Start.Before(at) && res.End.After(at) })
}

// StartedAfter returns the requests that started at or after at, e.g. new traffic after a signal.
func (r *Report) StartedAfter(at time.Time) *Report {
	return r.filter(func(res Result) bool { return !res.Start.Before(at) })
}

func (r *Report) filter(keep func(Result) bool) *Report {
	out := &Report{}
	for _, res := range r.Results {
		if keep(res) {
			out.Results = append(out.Results, res)
		}
	}
	return out
}

// Summary is a one-line count by kind, e.g. "20 requests: 18 ok, 2 eof".
func (r *Report) Summary() string {
	counts := map[Kind]int{}
	for _, res := range r.Results {
		counts[res.Kind]++
	}
	kinds := make([]string, 0, len(counts))
	for k := range counts {
		kinds = append(kinds, string(k))
	}
	sort.Strings(kinds)
	parts := make([]string, 0, len(kinds))
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%d %s", counts[Kind(k)], k))
	}
	return fmt.Sprintf("%d requests: %s", len(r.Results), strings.Join(parts, ", "))
}

// ErrTargetNotAllowed is returned for targets outside loopback and the allowed networks.
var ErrTargetNotAllowed = errors.New("target not allowed")

// CheckTarget validates target ("IP:port") and returns the address to dial. Only IP literals are accepted (and
// "localhost" as 127.0.0.1) so name resolution can never point the load elsewhere; the IP must be loopback or
// inside one of allowed.
func CheckTarget(target string, allowed []netip.Prefix) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("target %q: %w", target, err)
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("target %q: host must be an IP address, names are not resolved: %w", target, ErrTargetNotAllowed)
	}
	if addr.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("target %q: zoned addresses are not supported: %w", target, ErrTargetNotAllowed)
	}
	addr = addr.Unmap()
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return netip.AddrPort{}, fmt.Errorf("target %q: bad port %q", target, port)
	}
	ap := netip.AddrPortFrom(addr, uint16(n))
	if addr.IsLoopback() {
		return ap, nil
	}
	for _, p := range allowed {
		if p.Contains(addr) {
			return ap, nil
		}
	}
	return netip.AddrPort{}, fmt.Errorf("target %q: %s is neither loopback nor in the allowed networks %v: %w", target, addr, allowed, ErrTargetNotAllowed)
}

// Run sends requests until the bounds are reached or ctx ends, then waits for those in flight. It returns an
// error only for a bad Config or a refused target; request failures are in the Report.
func Run(ctx context.Context, c Config) (*Report, error) {
	ap, err := CheckTarget(c.Target, c.Allowed)
	if err != nil {
		return nil, err
	}
	if c.Requests <= 0 && c.Duration <= 0 {
		return nil, errors.New("loadgen: set Requests or Duration")
	}
	if c.Clients <= 0 {
		c.Clients = 1
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Path == "" {
		c.Path = "/"
	}
	if c.Host == "" {
		c.Host = c.Target
	}
	var deadline time.Time
	if c.Duration > 0 {
		deadline = time.Now().Add(c.Duration)
	}
	var issued atomic.Int64
	next := func() bool {
		if ctx.Err() != nil || (!deadline.IsZero() && !time.Now().Before(deadline)) {
			return false
		}
		return c.Requests <= 0 || issued.Add(1) <= int64(c.Requests)
	}
	per := make([][]Result, c.Clients)
	var wg sync.WaitGroup
	for i := range c.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := client{id: i, cfg: &c, addr: ap.String()}
			defer cl.close()
			for next() {
				per[i] = append(per[i], cl.do(ctx))
			}
		}()
	}
	wg.Wait()
	rep := &Report{}
	for _, rs := range per {
		rep.Results = append(rep.Results, rs...)
	}
	sort.SliceStable(rep.Results, func(a, b int) bool { return rep.Results[a].Start.Before(rep.Results[b].Start) })
	return rep, nil
}

// client is one sequential requester with at most one open connection.
type client struct {
	id   int
	cfg  *Config
	addr string
	conn conn
}

func (cl *client) close() { cl.conn.close() }

// do performs one request and never retries: a failure on a reused connection is recorded as such.
func (cl *client) do(ctx context.Context) Result {
	res := cl.conn.roundTrip(ctx, request{addr: cl.addr, path: cl.cfg.Path, host: cl.cfg.Host, keepAlive: cl.cfg.KeepAlive, timeout: cl.cfg.Timeout})
	res.Client = cl.id
	return res
}

// request is one GET to addr.
type request struct {
	addr, path, host string
	keepAlive        bool // ask to keep the connection; false sends Connection: close
	timeout          time.Duration
}

// conn is at most one raw HTTP/1.1 connection to one address, kept between requests when both sides agree.
type conn struct {
	c  net.Conn
	br *bufio.Reader
}

func (c *conn) open() bool { return c.c != nil }

func (c *conn) close() {
	if c.c != nil {
		c.c.Close()
		c.c, c.br = nil, nil
	}
}

// roundTrip sends r on the open connection (Result.Reused) or a new one, reads the whole response and never
// retries. The connection stays open only when the request succeeded and both sides keep it alive.
func (c *conn) roundTrip(ctx context.Context, r request) Result {
	res := Result{Start: time.Now()}
	finish := func(k Kind, err error) Result {
		res.End, res.Kind = time.Now(), k
		if err != nil {
			res.Err = err.Error()
		}
		if k != OK {
			c.close()
		}
		return res
	}
	deadline := res.Start.Add(r.timeout)
	if c.c == nil {
		d := net.Dialer{Deadline: deadline}
		nc, err := d.DialContext(ctx, "tcp", r.addr)
		if err != nil {
			return finish(classify(err), err)
		}
		c.c, c.br = nc, bufio.NewReader(nc)
	} else {
		res.Reused = true
	}
	if err := c.c.SetDeadline(deadline); err != nil {
		return finish(Other, err)
	}
	req := "GET " + r.path + " HTTP/1.1\r\nHost: " + r.host + "\r\nUser-Agent: lastcall-loadgen\r\n"
	if !r.keepAlive {
		req += "Connection: close\r\n"
	}
	if _, err := io.WriteString(c.c, req+"\r\n"); err != nil {
		return finish(classify(err), err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return finish(classify(err), err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	res.Status = resp.StatusCode
	if err != nil {
		return finish(classify(err), err)
	}
	if resp.Close || !r.keepAlive {
		c.close()
	}
	switch {
	case resp.StatusCode >= 500:
		return finish(Status5xx, fmt.Errorf("status %d", resp.StatusCode))
	case resp.StatusCode >= 400:
		return finish(Status4xx, fmt.Errorf("status %d", resp.StatusCode))
	}
	return finish(OK, nil)
}

func classify(err error) Kind {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return ConnectRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return Reset
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return EOF
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return Timeout
	}
	return Other
}
