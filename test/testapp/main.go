// Command testapp is the e2e and demo test application. Its image (local.test/testapp:1) contains only this
// static binary, so it doubles as the distroless case: no shell, no sleep, no kill.
//
//	testapp [serve] [-addr :8080] [-shutdown-timeout 30s]
//	    HTTP server: / answers at once, /slow?ms=N works for N ms then answers 200, /healthz.
//	    On SIGTERM it drains: stops accepting, finishes in-flight requests (http.Server.Shutdown), exits 0.
//	testapp worker [-task 10s] [-tasks 0] [-log-file PATH]
//	    A celery-like worker running tasks one after another. SIGTERM = warm shutdown: the current task
//	    finishes ("task N done") and the worker exits 0. A second SIGTERM, SIGINT or SIGQUIT = cold shutdown:
//	    the current task is abandoned ("task N lost") and the worker exits 1.
//	testapp load -service web [-namespace NS] [-port 80] [-clients 4] [-keepalive-clients 2] [-allow CIDR,...]
//	    The endpoint-following load (internal/loadgen) from inside the cluster, for clusters whose pod network
//	    the test host cannot reach (kind, an existing cluster). Streams JSON lines (loadgen.Event) to stdout;
//	    SIGTERM stops it: no new request, those in flight finish, then the "done" line.
//
// Every line goes to stdout and, with -log-file, is appended to that file too (a hostPath survives the pod).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

func main() {
	args := os.Args[1:]
	mode := "serve"
	if len(args) > 0 && (args[0] == "serve" || args[0] == "worker" || args[0] == "load") {
		mode, args = args[0], args[1:]
	}
	var err error
	switch mode {
	case "serve":
		err = serveMain(args)
	case "worker":
		err = workerMain(args)
	case "load":
		err = loadMain(args)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testapp:", err)
		os.Exit(1)
	}
}

// logger writes timestamped lines to stdout and an optional file.
type logger struct {
	mu sync.Mutex
	w  []io.Writer
}

func newLogger(file string) (*logger, error) {
	l := &logger{w: []io.Writer{os.Stdout}}
	if file != "" {
		f, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		l.w = append(l.w, f)
	}
	return l, nil
}

func (l *logger) Printf(format string, a ...any) {
	line := time.Now().UTC().Format("15:04:05.000") + " " + fmt.Sprintf(format, a...) + "\n"
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, w := range l.w {
		io.WriteString(w, line)
	}
}

func serveMain(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", ":8080", "listen address")
	timeout := fs.Duration("shutdown-timeout", 30*time.Second, "how long to wait for in-flight requests on SIGTERM")
	logFile := fs.String("log-file", "", "also append log lines to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := newLogger(*logFile)
	if err != nil {
		return err
	}
	srv := &http.Server{Addr: *addr, Handler: newMux(), ReadHeaderTimeout: 10 * time.Second}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Printf("serving on %s (pid %d)", *addr, os.Getpid())
	select {
	case err := <-errc:
		return err
	case s := <-sig:
		log.Printf("got %v: draining (timeout %v)", s, *timeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Printf("shutdown: %v", err)
		return err
	}
	log.Printf("drained, exiting")
	return nil
}

func newMux() *http.ServeMux {
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if err != nil || ms < 0 || ms > 600000 {
			http.Error(w, "want ?ms=0..600000", http.StatusBadRequest)
			return
		}
		work(time.Duration(ms) * time.Millisecond)
		fmt.Fprintf(w, "slow %d ms from %s\n", ms, host)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintf(w, "hello from %s\n", host) })
	return mux
}

// work keeps the request busy for d: short bursts of CPU between 1 ms sleeps, like a handler that does
// something rather than parking on a timer.
func work(d time.Duration) {
	end := time.Now().Add(d)
	x := uint64(1)
	for time.Now().Before(end) {
		for i := 0; i < 20000; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
		time.Sleep(time.Millisecond)
	}
	_ = x
}

func workerMain(args []string) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	task := fs.Duration("task", 10*time.Second, "length of one task")
	tasks := fs.Int("tasks", 0, "stop after this many tasks (0 = run until signalled)")
	logFile := fs.String("log-file", "", "also append log lines to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := newLogger(*logFile)
	if err != nil {
		return err
	}
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
	if err := runWorker(log, *task, *tasks, sig); err != nil {
		return err
	}
	return nil
}

var errCold = errors.New("cold shutdown: current task lost")

// runWorker runs tasks until n are done or a signal arrives. The first SIGTERM lets the running task finish
// (warm shutdown); SIGINT, SIGQUIT or a second SIGTERM abandon it (cold shutdown).
func runWorker(log *logger, task time.Duration, n int, sig <-chan os.Signal) error {
	log.Printf("worker started (pid %d, task %v)", os.Getpid(), task)
	warm := false
	for i := 1; n == 0 || i <= n; i++ {
		log.Printf("task %d started", i)
		timer := time.NewTimer(task)
	wait:
		for {
			select {
			case <-timer.C:
				break wait
			case s := <-sig:
				if s == syscall.SIGTERM && !warm {
					warm = true
					log.Printf("warm shutdown (%v): finishing task %d", s, i)
					continue
				}
				log.Printf("task %d lost (%v)", i, s)
				return errCold
			}
		}
		log.Printf("task %d done", i)
		if warm {
			log.Printf("worker stopped after task %d", i)
			return nil
		}
	}
	log.Printf("worker finished %d tasks", n)
	return nil
}
