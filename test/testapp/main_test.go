package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestHandlers(t *testing.T) {
	srv := httptest.NewServer(newMux())
	defer srv.Close()
	for path, want := range map[string]int{"/": 200, "/healthz": 200, "/slow?ms=30": 200, "/slow?ms=x": 400} {
		start := time.Now()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: status %d, want %d", path, resp.StatusCode, want)
		}
		if path == "/slow?ms=30" && time.Since(start) < 30*time.Millisecond {
			t.Errorf("/slow returned after %v", time.Since(start))
		}
	}
}

func testLogger() (*logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return &logger{w: []io.Writer{&buf}}, &buf
}

func TestWorkerWarmShutdown(t *testing.T) {
	log, buf := testLogger()
	sig := make(chan os.Signal, 2)
	go func() { time.Sleep(20 * time.Millisecond); sig <- syscall.SIGTERM }()
	if err := runWorker(log, 100*time.Millisecond, 0, sig); err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); !strings.Contains(out, "task 1 done") || strings.Contains(out, "task 2 started") {
		t.Fatalf("warm shutdown did not finish exactly task 1:\n%s", out)
	}
}

func TestWorkerColdShutdown(t *testing.T) {
	log, buf := testLogger()
	sig := make(chan os.Signal, 2)
	go func() { time.Sleep(20 * time.Millisecond); sig <- syscall.SIGTERM; sig <- syscall.SIGTERM }()
	if err := runWorker(log, time.Second, 0, sig); err != errCold {
		t.Fatalf("err = %v, want cold shutdown", err)
	}
	if out := buf.String(); !strings.Contains(out, "task 1 lost") {
		t.Fatalf("no lost task:\n%s", out)
	}
}

func TestLoadFlagsAreChecked(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-namespace", "x"}, "-service is required"},
		{[]string{"-service", "web", "-namespace", "x", "-allow", "10.244.0.0/33"}, `allowed network "10.244.0.0/33"`},
		{[]string{"-service", "web", "-namespace", "x", "-min-ms", "5", "-max-ms", "1"}, "-min-ms 5 and -max-ms 1"},
	} {
		err := loadMain(c.args)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("load %v = %v, want an error containing %q", c.args, err, c.want)
		}
	}
}
