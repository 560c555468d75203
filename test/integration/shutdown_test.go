package integration

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/lastcall-dev/lastcall/internal/testenv"
	"github.com/lastcall-dev/lastcall/pkg/webhook"
)

// The lastcall-webhook binary on SIGTERM reports not ready at once, keeps serving the admission that is in
// flight, and exits only after it has answered. With graceful shutdown off (--shutdown-timeout=-1s) it exits
// while the admission is still in flight and the caller gets no answer: the difference the chart's
// shutdown.drainSeconds makes. The real binary and a real signal, against the suite's API server.
func TestShutdownDrainsInFlightAdmission(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "lastcall-webhook")
	build := exec.Command("go", "build", "-o", bin, "./cmd/webhook")
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	kubeconfig := writeKubeconfig(t)
	for _, tc := range []struct {
		name, timeout string
		drains        bool
	}{
		{"drain", "10s", true},
		{"no-drain", "-1s", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port, probe := freePort(t), freeAddr(t)
			cmd := exec.Command(bin, "--kubeconfig", kubeconfig, "--config", policyFile, "--cert-dir", certDir,
				"--cert-mode", "external", "--port", strconv.Itoa(port), "--metrics-bind-address", "0",
				"--health-probe-bind-address", probe, "--shutdown-timeout", tc.timeout, "--namespace", "default")
			var logs bytes.Buffer
			cmd.Stdout, cmd.Stderr = &logs, &logs
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				if t.Failed() {
					t.Logf("webhook log:\n%s", logs.String())
				}
			})
			if err := testenv.WaitReady(probe, done, 60*time.Second); err != nil {
				t.Fatal(err)
			}

			// An admission in flight: headers and half of the body sent, the rest after SIGTERM.
			conn, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // loopback test server
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			body := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"default","operation":"CREATE","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"app","image":"x"}]}}}}`)
			if _, err := fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: lastcall\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", webhook.Path, len(body)); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Write(body[:len(body)/2]); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond) // the server is reading the request
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}

			exited := false
			select {
			case <-done:
				exited = true
			case <-time.After(1500 * time.Millisecond):
			}
			if !tc.drains {
				if !exited {
					t.Fatal("the webhook did not exit within 1.5s of SIGTERM with graceful shutdown off")
				}
				_, _ = conn.Write(body[len(body)/2:])
				_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
				if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err == nil {
					resp.Body.Close()
					t.Fatalf("the in-flight admission got HTTP %d from a webhook that had exited", resp.StatusCode)
				}
				return
			}
			if exited {
				t.Fatal("the webhook exited while an admission was in flight")
			}
			if code := readyzCode(probe); code == http.StatusOK {
				t.Error("/readyz answered 200 after SIGTERM")
			}
			if _, err := conn.Write(body[len(body)/2:]); err != nil {
				t.Fatalf("finish the request: %v", err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("the in-flight admission got no response: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("in-flight admission: HTTP %d", resp.StatusCode)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("webhook exit: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("the webhook did not exit after the last admission finished")
			}
		})
	}
}

// writeKubeconfig writes the suite's API server credentials as a kubeconfig for the binary.
func writeKubeconfig(t *testing.T) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["envtest"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "envtest"}
	kc.CurrentContext = "envtest"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func readyzCode(probe string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + probe + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func freeAddr(t *testing.T) string {
	t.Helper()
	a, err := testenv.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func freePort(t *testing.T) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(freeAddr(t))
	n, _ := strconv.Atoi(p)
	return n
}
