package shim

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	sidekiqJobs    = 2
	sidekiqJobTime = 10 * time.Second
	// sidekiqWorker records in Redis sets when each job starts and finishes, so lost jobs are counted from Redis.
	sidekiqWorker = `require "sidekiq"
url = ENV.fetch("LASTCALL_REDIS")
Sidekiq.configure_server { |c| c.redis = { url: url } }
Sidekiq.configure_client { |c| c.redis = { url: url } }

class SlowJob
  include Sidekiq::Worker
  sidekiq_options retry: false

  def perform(n, secs)
    Sidekiq.redis { |r| r.sadd("started", n) }
    deadline = Time.now + secs
    sleep 0.05 while Time.now < deadline
    Sidekiq.redis { |r| r.sadd("done", n) }
  end
end
`
)

// startSidekiq runs Debian's sidekiq (concurrency 2, -t TIMEOUT) as PID 1 of a PID namespace with K jobs
// running.
func startSidekiq(t *testing.T, timeout time.Duration) (*nsProc, *redis) {
	t.Helper()
	tools := requireReal(t, "sidekiq", "ruby", "unshare", "nsenter")
	r := startRedis(t)
	dir := t.TempDir()
	worker := filepath.Join(dir, "worker.rb")
	writeFile(t, worker, sidekiqWorker)
	env := debianEnv("LASTCALL_REDIS="+r.url(), asShimEnv+"=1")
	ns := startInPIDNS(t, env, tools["sidekiq"], "-r", worker, "-c", strconv.Itoa(sidekiqJobs), "-t", strconv.Itoa(int(timeout.Seconds())))
	submit := exec.Command(tools["ruby"], "-r", worker, "-e", fmt.Sprintf("%d.times { |i| SlowJob.perform_async(i, %d) }", sidekiqJobs, int(sidekiqJobTime.Seconds())))
	submit.Env = env
	if out, err := submit.CombinedOutput(); err != nil {
		t.Fatalf("submit jobs: %v\n%s", err, out)
	}
	waitFor(t, 30*time.Second, fmt.Sprintf("%d Sidekiq jobs to run", sidekiqJobs), func() bool { return r.count(t, "started") == sidekiqJobs })
	return ns, r
}

// queued is the length of Sidekiq's default queue: jobs pushed back by a shutdown are there.
func sidekiqQueued(t *testing.T, r *redis) int {
	t.Helper()
	out, err := r.do("LLEN", "queue:default")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(out)
	return n
}

// The sidekiq profile: SIGTERM stops fetching and waits up to -t (the profile's timeout) for the running jobs.
func TestServerSidekiqPrestopTermFinishesRunningJobs(t *testing.T) {
	t.Parallel()
	p := profile(t, "sidekiq")
	ns, r := startSidekiq(t, p.DrainTimeout)
	hook := hookInNS(t, ns, prestopArgs(p.StopSignal, p.DrainTimeout)...)
	waitFor(t, 10*time.Second, "the hook to signal", func() bool { return !hook.stdout.signalled().IsZero() })
	sent := hook.stdout.signalled()
	if !ns.exitedWithin(exitBound(p)) {
		t.Fatalf("sidekiq still running %s after %s; output:\n%s", exitBound(p), p.StopSignal, ns.out)
	}
	done, queued := r.count(t, "done"), sidekiqQueued(t, r)
	t.Logf("sidekiq %s (-t %s): %d/%d running jobs done, %d pushed back, exit %d after %s", p.StopSignal, p.DrainTimeout,
		done, sidekiqJobs, queued, ns.exitCode(), ns.exited.Sub(sent).Round(100*time.Millisecond))
	if done != sidekiqJobs || queued != 0 {
		t.Errorf("%d/%d jobs done, %d pushed back; want all done; output:\n%s", done, sidekiqJobs, queued, ns.out)
	}
}

// The baselines. A SIGKILL at a deadline (a grace period shorter than the jobs, or -t longer than it) loses the
// running jobs: Sidekiq's basic fetch has already removed them from Redis. And SIGTERM with a -t shorter than
// the jobs interrupts them and pushes them back: they run again from the start on another worker.
func TestServerSidekiqBaselineLosesOrRepeatsJobs(t *testing.T) {
	t.Parallel()
	t.Run("SIGKILL at the deadline loses them", func(t *testing.T) {
		t.Parallel()
		ns, r := startSidekiq(t, 25*time.Second)
		unix.Kill(ns.pid, unix.SIGKILL)
		if !ns.exitedWithin(5 * time.Second) {
			t.Fatal("sidekiq still running after SIGKILL")
		}
		done, queued := r.count(t, "done"), sidekiqQueued(t, r)
		t.Logf("sidekiq SIGKILL: %d/%d done, %d in the queue", done, sidekiqJobs, queued)
		if done != 0 || queued != 0 {
			t.Errorf("%d done, %d queued; want the running jobs lost, or the baseline proves nothing", done, queued)
		}
	})
	t.Run("SIGTERM with a short -t interrupts them", func(t *testing.T) {
		t.Parallel()
		ns, r := startSidekiq(t, 2*time.Second)
		sent := time.Now()
		unix.Kill(ns.pid, unix.SIGTERM)
		if !ns.exitedWithin(15 * time.Second) {
			t.Fatal("sidekiq still running 15s after SIGTERM with -t 2")
		}
		done, queued := r.count(t, "done"), sidekiqQueued(t, r)
		t.Logf("sidekiq SIGTERM -t 2: %d/%d done, %d pushed back, exit after %s", done, sidekiqJobs, queued, ns.exited.Sub(sent).Round(100*time.Millisecond))
		if done != 0 || queued != sidekiqJobs {
			t.Errorf("%d done, %d pushed back; want 0 done and %d pushed back (interrupted)", done, queued, sidekiqJobs)
		}
	})
}
