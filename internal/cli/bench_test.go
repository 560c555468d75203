package cli

import (
	"bytes"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"testing"
)

// mix is one application as `helm template` renders it: half workloads (nginx + php-fpm, gunicorn, postgres,
// a celery CronJob, one already injected by an earlier run), half everything else.
var mix = []string{
	`# Source: app/templates/web.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web-%[1]d
  labels: {app.kubernetes.io/name: web, app.kubernetes.io/instance: app-%[1]d}
spec:
  replicas: 3
  selector: {matchLabels: {app: web-%[1]d}}
  template:
    metadata:
      labels: {app: web-%[1]d}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}}
        resources: {requests: {cpu: 100m, memory: 64Mi}, limits: {memory: 128Mi}}
        volumeMounts: [{name: sock, mountPath: /run/php}]
      - name: php
        image: php:8.3-fpm
        env: [{name: APP_ENV, value: prod}, {name: DB_HOST, value: db-%[1]d}]
        resources: {requests: {cpu: 250m, memory: 256Mi}}
        volumeMounts: [{name: sock, mountPath: /run/php}]
      volumes: [{name: sock, emptyDir: {}}]
`,
	`apiVersion: v1
kind: Service
metadata: {name: web-%[1]d}
spec:
  selector: {app: web-%[1]d}
  ports: [{port: 80, targetPort: 8080}]
`,
	`apiVersion: v1
kind: ConfigMap
metadata: {name: web-%[1]d-config}
data:
  APP_ENV: prod
  nginx.conf: |
    worker_processes auto;
    events { worker_connections 1024; }
    http { server { listen 8080; location / { fastcgi_pass unix:/run/php/fpm.sock; } } }
`,
	`apiVersion: apps/v1
kind: Deployment
metadata: {name: api-%[1]d}
spec:
  selector: {matchLabels: {app: api-%[1]d}}
  template:
    metadata: {labels: {app: api-%[1]d}}
    spec:
      containers:
      - name: api
        image: registry.example.com/api:1.4.2
        command: [gunicorn, -b, "0.0.0.0:8000", app:wsgi]
        resources: {requests: {cpu: 200m, memory: 256Mi}}
`,
	`apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db-%[1]d}
spec:
  serviceName: db-%[1]d
  selector: {matchLabels: {app: db-%[1]d}}
  template:
    metadata: {labels: {app: db-%[1]d}}
    spec:
      containers:
      - name: postgres
        image: postgres:16
        volumeMounts: [{name: data, mountPath: /var/lib/postgresql/data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 10Gi}}}
`,
	`apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly-%[1]d}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - name: worker
            image: registry.example.com/worker:2
            command: [celery, -A, app, worker]
`,
	`apiVersion: v1
kind: Secret
metadata: {name: db-%[1]d-credentials}
type: Opaque
stringData: {username: app, password: not-a-secret}
`,
	`apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web-%[1]d}
spec:
  rules:
  - host: app-%[1]d.example.com
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web-%[1]d, port: {number: 80}}}}]}
`,
	`apiVersion: v1
kind: ServiceAccount
metadata: {name: app-%[1]d}
`,
	"", // filled with an already injected Deployment by benchInput
}

func benchInput(tb testing.TB, n int) []byte {
	tb.Helper()
	// The last kind of the mix is a Deployment injected by an earlier run, as a GitOps repository holds it.
	prior, _, code := run(tb, fmt.Sprintf(mix[3], 0), "inject")
	if code != ExitOK {
		tb.Fatalf("inject: exit %d", code)
	}
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString("---\n")
		}
		if k := i % len(mix); k == len(mix)-1 {
			b.WriteString(strings.ReplaceAll(prior, "api-0", fmt.Sprintf("api-%d", i)))
		} else {
			fmt.Fprintf(&b, mix[k], i)
		}
	}
	return b.Bytes()
}

// BenchmarkInject10k: 10,000 documents through `lastcall inject`, everything but the file read (parse,
// engine, merge, re-encode, warnings). The bar is 2 s per run (docs/performance.md).
func BenchmarkInject10k(b *testing.B) {
	// As cmd/lastcall runs.
	defer debug.SetGCPercent(debug.SetGCPercent(GCPercent))
	input := benchInput(b, 10000)
	b.SetBytes(int64(len(input)))
	b.ReportAllocs()
	b.ResetTimer()
	start := cpuTime()
	for b.Loop() {
		var out bytes.Buffer
		if code := Run([]string{"inject"}, bytes.NewReader(input), &out, io.Discard); code != ExitOK {
			b.Fatalf("exit %d", code)
		}
	}
	// CPU seconds per run, over both cores: wall time on an idle 2-core machine is about half of it.
	b.ReportMetric((cpuTime()-start).Seconds()/float64(b.N), "cpu-s/op")
}

// The benchmark input is what it claims: 10,000 documents, half workloads, every workload injected.
func TestBenchInput(t *testing.T) {
	t.Parallel()
	input := benchInput(t, 1000)
	if n := len(docsOf(string(input))); n != 1000 {
		t.Fatalf("want 1000 documents, got %d", n)
	}
	out, stderr, code := run(t, string(input), "inject")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if n := strings.Count(out, "lastcall.dev/injected:"); n != 500 {
		t.Errorf("want 500 injected templates, got %d", n)
	}
	again, _, _ := run(t, out, "inject")
	if again != out {
		t.Error("not idempotent on the benchmark input")
	}
}
