// Package summary is the observer's per-workload view of recent shutdowns: a bounded window of samples, the
// JSON the observer serves at /shutdowns, and the one-line verdict `lastcall status` prints. It has no
// dependencies beyond the standard library so the CLI can use it without linking the server.
package summary

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Outcome values, as in the observer's metric (kept as strings here to keep this package dependency-free).
const (
	Exited        = "exited"
	ExitedNonzero = "exited-nonzero"
	Killed        = "killed"
	OOM           = "oom"
	Unknown       = "unknown"
)

// Report is the body of GET /shutdowns.
type Report struct {
	// Leader is false on a replica that does not run the observer (it has no data): ask the one that holds
	// the observer's Lease.
	Leader bool `json:"leader"`
	// Window is how far back the samples go; MaxSamples bounds them per workload container.
	Window     string     `json:"window"`
	MaxSamples int        `json:"maxSamples"`
	Workloads  []Workload `json:"workloads"`
}

// Workload summarises the recent shutdowns of one container of one workload.
type Workload struct {
	Namespace string `json:"namespace"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Container string `json:"container"`
	Profile   string `json:"profile"`
	// Shutdowns counts the samples in the window; the outcome counts add up to it.
	Shutdowns     int `json:"shutdowns"`
	Exited        int `json:"exited"`
	ExitedNonzero int `json:"exitedNonzero"`
	Killed        int `json:"killed"`
	OOM           int `json:"oom"`
	Unknown       int `json:"unknown"`
	// P50Seconds, P99Seconds and MaxSeconds are over the samples with a known duration.
	P50Seconds float64 `json:"p50Seconds"`
	P99Seconds float64 `json:"p99Seconds"`
	MaxSeconds float64 `json:"maxSeconds"`
	// GraceSeconds is the grace period of the latest shutdown.
	GraceSeconds float64   `json:"graceSeconds"`
	Last         time.Time `json:"last"`
}

// Sample is one container's shutdown.
type Sample struct {
	At          time.Time
	Outcome     string
	Duration    time.Duration
	HasDuration bool
	Grace       time.Duration
}

// ProfileNone is the profile of a container lastcall does not manage (observe mode, profile none).
const ProfileNone = "none"

// Key names a workload's container.
type Key struct{ Namespace, Kind, Name, Container string }

type series struct {
	profile string
	samples []Sample // ring, oldest overwritten first
	next    int
	last    time.Time
}

// Store keeps, per workload container, the latest MaxSamples samples younger than Window, and at most MaxKeys
// workload containers (the least recently updated is dropped first). Safe for concurrent use.
type Store struct {
	Window     time.Duration
	MaxSamples int
	MaxKeys    int

	mu   sync.Mutex
	data map[Key]*series
}

// NewStore returns a store with the given bounds.
func NewStore(window time.Duration, maxSamples, maxKeys int) *Store {
	return &Store{Window: window, MaxSamples: maxSamples, MaxKeys: maxKeys, data: map[Key]*series{}}
}

// Add records one sample.
func (s *Store) Add(k Key, profile string, x Sample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	se := s.data[k]
	if se == nil {
		if len(s.data) >= s.MaxKeys {
			s.evictOldest()
		}
		se = &series{samples: make([]Sample, 0, min(s.MaxSamples, 8))}
		s.data[k] = se
	}
	se.profile, se.last = profile, x.At
	if len(se.samples) < s.MaxSamples {
		se.samples = append(se.samples, x)
		return
	}
	se.samples[se.next] = x
	se.next = (se.next + 1) % s.MaxSamples
}

func (s *Store) evictOldest() {
	var oldest Key
	var t time.Time
	first := true
	for k, se := range s.data {
		if first || se.last.Before(t) {
			oldest, t, first = k, se.last, false
		}
	}
	delete(s.data, oldest)
}

// Report summarises the samples younger than the window at now.
func (s *Store) Report(now time.Time) Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := Report{Leader: true, Window: s.Window.String(), MaxSamples: s.MaxSamples, Workloads: []Workload{}}
	var durs []float64
	for k, se := range s.data {
		w := Workload{Namespace: k.Namespace, Kind: k.Kind, Name: k.Name, Container: k.Container, Profile: se.profile}
		durs = durs[:0]
		var latest time.Time
		for _, x := range se.samples {
			if now.Sub(x.At) > s.Window {
				continue
			}
			w.Shutdowns++
			switch x.Outcome {
			case Exited:
				w.Exited++
			case ExitedNonzero:
				w.ExitedNonzero++
			case Killed:
				w.Killed++
			case OOM:
				w.OOM++
			default:
				w.Unknown++
			}
			if x.HasDuration {
				durs = append(durs, x.Duration.Seconds())
			}
			if !x.At.Before(latest) {
				latest, w.GraceSeconds = x.At, x.Grace.Seconds()
			}
		}
		if w.Shutdowns == 0 {
			continue
		}
		w.Last = latest
		if len(durs) > 0 {
			sort.Float64s(durs)
			w.P50Seconds, w.P99Seconds, w.MaxSeconds = quantile(durs, 0.5), quantile(durs, 0.99), durs[len(durs)-1]
		}
		r.Workloads = append(r.Workloads, w)
	}
	Sort(r.Workloads)
	return r
}

// HolderPod is the pod name in the observer Lease's holderIdentity ("<pod name>_<random>").
func HolderPod(holder string) string {
	name, _, _ := strings.Cut(holder, "_")
	return name
}

// Sort orders workloads by namespace, kind, name, container.
func Sort(ws []Workload) {
	slices.SortFunc(ws, func(a, b Workload) int {
		for _, c := range [4][2]string{{a.Namespace, b.Namespace}, {a.Kind, b.Kind}, {a.Name, b.Name}, {a.Container, b.Container}} {
			if c[0] != c[1] {
				if c[0] < c[1] {
					return -1
				}
				return 1
			}
		}
		return 0
	})
}

// quantile of sorted values by the nearest-rank method (no interpolation: with few samples an interpolated
// p99 is a value no shutdown had).
func quantile(sorted []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// ShortenFactor: a grace period this many times the p99 duration (and at least ShortenMin longer) is called
// oversized: rollouts and node drains wait for the grace period of pods that hang, so it costs time.
const (
	ShortenFactor = 4
	ShortenMin    = 60 * time.Second
)

// Verdict is the one-line judgement `lastcall status` prints for a workload container.
func Verdict(w Workload) string {
	switch {
	case w.Shutdowns == 0:
		return "no shutdowns in the window"
	case w.Killed > 0:
		// A killed container ran until the deadline, so it needed more than the grace period; how much more
		// is unknown. Twice the longest observed shutdown is a first step that a second week of data refines.
		need := time.Duration(math.Ceil(2*math.Max(w.MaxSeconds, w.GraceSeconds))) * time.Second
		if w.Profile == ProfileNone {
			// Observe mode (or profile none): the annotation would change nothing until lastcall manages it.
			return fmt.Sprintf("killed %d of %d: grace %s is too short and lastcall does not manage this container: label the namespace lastcall.dev/inject=enabled (then raise lastcall.dev/drain-timeout.%s) or raise terminationGracePeriodSeconds (try >= %s)",
				w.Killed, w.Shutdowns, secs(w.GraceSeconds), w.Container, need)
		}
		if need == 0 {
			return fmt.Sprintf("killed %d of %d: raise lastcall.dev/drain-timeout.%s", w.Killed, w.Shutdowns, w.Container)
		}
		return fmt.Sprintf("killed %d of %d: raise lastcall.dev/drain-timeout.%s so the grace period exceeds %s (try >= %s)",
			w.Killed, w.Shutdowns, w.Container, secs(w.GraceSeconds), need)
	case w.OOM > 0:
		return fmt.Sprintf("oom %d of %d: the container ran out of memory while shutting down", w.OOM, w.Shutdowns)
	case w.Unknown == w.Shutdowns:
		return fmt.Sprintf("unknown: none of %d shutdowns reported how it ended", w.Shutdowns)
	case w.GraceSeconds > 0 && w.P99Seconds > 0 && w.GraceSeconds >= ShortenFactor*w.P99Seconds &&
		w.GraceSeconds-w.P99Seconds >= ShortenMin.Seconds():
		return fmt.Sprintf("grace %s but p99 needs %s: could shorten rollouts", secs(w.GraceSeconds), secs(w.P99Seconds))
	case w.ExitedNonzero > 0:
		return fmt.Sprintf("fine (%d of %d exited non-zero: check the app's exit code on its stop signal)", w.ExitedNonzero, w.Shutdowns)
	default:
		return "fine"
	}
}

func secs(s float64) string {
	return (time.Duration(math.Round(s)) * time.Second).String()
}
