//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/lastcall-dev/lastcall/test/e2e/framework"
)

const (
	annSupervise = "lastcall.dev/supervise"
	// celeryE2EApp records every start and end of a task in Redis: "runs:N" counts executions (acknowledged
	// once means run once), "done" holds the finished tasks, "start" and "host" when and on which pod each
	// task last started (the pods share this host's clock).
	celeryE2EApp = `import os, socket, time
import redis
from celery import Celery

url = os.environ["REDIS_URL"]
app = Celery("tasks", broker=url, backend=url)
app.conf.update(worker_prefetch_multiplier=1, worker_direct=True)
r = redis.Redis.from_url(url)

@app.task
def slow(n, secs):
    r.incr("runs:%d" % n)
    r.hset("start", n, repr(time.time()))
    r.hset("host", n, socket.gethostname())
    r.sadd("started", n)
    end = time.time() + secs
    while time.time() < end:
        time.sleep(0.1)
    r.sadd("done", n)
    return n
`
	celeryReplicas = 3
	celeryTasksE2E = celeryReplicas * 2 // concurrency 2: every pool process busy
	// celeryTaskLen is twice the default grace period (30 s): a task of a removed pod is cut by the SIGKILL
	// unless it had already run 30 s when the scale-down came; the test checks that from the recorded starts.
	celeryTaskLen = 60 * time.Second
	celeryGrace   = 30 * time.Second
)

// The seed scenario with the real thing (issue 13): a real Celery worker (prefork, concurrency 2) and a real
// Redis, both from Debian, started by a shell entrypoint that does not exec (the shape of a celery_worker.sh),
// scaled down from 3 to 1 replicas while 60 s tasks run, as KEDA does on a shrinking queue. Without lastcall,
// sh is PID 1 and ignores SIGTERM, the kubelet SIGKILLs the pods after 30 s, and their tasks are lost (counted
// from Redis). With the celery profile and lastcall.dev/supervise, lastcall-shim run is PID 1, its SIGTERM
// reaches the worker the shell left behind, and every task finishes, each run exactly once.
func TestCeleryBehindShellScaleDown(t *testing.T) {
	t.Parallel()
	env := framework.Current(t)
	ctx := context.Background()
	type run struct {
		name, ns, redisPod string
		scaled             time.Time
		deleted            map[string]time.Time // when each removed pod was deleted
	}
	runs := []*run{{name: "without"}, {name: "with"}}
	for _, r := range runs {
		labels := map[string]string(nil)
		if r.name == "with" {
			labels = optedIn
		}
		r.ns = env.Namespace(t, labels) // dumps its diagnostics when the test fails
		r.redisPod = startCeleryRedis(t, env, r.ns)
	}
	for _, r := range runs {
		ip := podIP(t, env, r.ns, r.redisPod)
		d := celeryDeployment(fmt.Sprintf("redis://%s:6379/0", ip))
		if _, err := env.Client.AppsV1().Deployments(r.ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range runs {
		if err := framework.WaitFor(ctx, 3*time.Minute, r.name+": 3 workers ready", func(ctx context.Context) (bool, error) {
			d, err := env.Client.AppsV1().Deployments(r.ns).Get(ctx, "worker", metav1.GetOptions{})
			return err == nil && d.Status.ReadyReplicas == celeryReplicas, nil
		}); err != nil {
			t.Fatal(err)
		}
		pods, err := env.Client.CoreV1().Pods(r.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=worker"})
		if err != nil || len(pods.Items) == 0 {
			t.Fatalf("%s: list workers: %v", r.name, err)
		}
		cmd := pods.Items[0].Spec.Containers[0].Command
		if supervised := len(cmd) > 1 && cmd[0] == shimPath && cmd[1] == "run"; supervised != (r.name == "with") {
			t.Fatalf("%s lastcall: worker command %q: want it under lastcall-shim run only with lastcall", r.name, cmd)
		}
		// Every worker must be consuming before the tasks are queued, and each gets exactly 2 (one per pool
		// process) through its own queue (worker_direct), so all 6 start within a moment and none has run 30 s
		// of its 60 s when the scale-down comes (one that started early could finish inside the grace period).
		// Not the shared queue: with Celery's early ack a task leaves the prefetch count as soon as it reaches a
		// pool process, so one worker can reserve a third task, which then starts 60 s late (seen in CI).
		var workers []string
		if err := framework.WaitFor(ctx, 2*time.Minute, r.name+": 3 workers answer ping", func(ctx context.Context) (bool, error) {
			out, _ := env.Kubectl(ctx, "-n", r.ns, "exec", r.redisPod, "--", "sh", "-c", "cd /app && celery -A tasks inspect ping -t 3")
			workers = celeryWorkers(out)
			return len(workers) == celeryReplicas, nil
		}); err != nil {
			t.Fatal(err)
		}
		submit := fmt.Sprintf("import tasks\nfrom celery.utils import worker_direct\nw = %q.split()\nfor i in range(%d): tasks.slow.apply_async((i, %d), queue=worker_direct(w[i %% len(w)]))",
			strings.Join(workers, " "), celeryTasksE2E, int(celeryTaskLen.Seconds()))
		if out, err := env.Kubectl(ctx, "-n", r.ns, "exec", r.redisPod, "--", "sh", "-c", "cd /app && python3 -c \"$0\"", submit); err != nil {
			t.Fatalf("%s: submit tasks: %v\n%s", r.name, err, out)
		}
		if err := framework.WaitFor(ctx, 2*time.Minute, r.name+": every task running", func(ctx context.Context) (bool, error) {
			out, _ := redisCLI(ctx, env, r.ns, r.redisPod, "SCARD", "started")
			return out == strconv.Itoa(celeryTasksE2E), nil
		}); err != nil {
			t.Fatal(err)
		}
		// Scale down at once, while every task has more than the 30 s grace period left to run.
		r.scaled = time.Now()
		if _, err := env.Client.AppsV1().Deployments(r.ns).Patch(ctx, "worker", types.MergePatchType, []byte(`{"spec":{"replicas":1}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Every task has ended or been killed by the task length plus the grace period without lastcall. On the
	// way, when each removed pod was deleted: a loaded control plane can delete it seconds after the scale-down,
	// and the grace period runs from then.
	for _, r := range runs {
		r.deleted = map[string]time.Time{}
		if err := framework.WaitFor(ctx, celeryTaskLen+90*time.Second, r.name+": one worker left", func(ctx context.Context) (bool, error) {
			pods, err := env.Client.CoreV1().Pods(r.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=worker"})
			if err != nil {
				return false, nil
			}
			for _, p := range pods.Items {
				if ts, g := p.DeletionTimestamp, p.DeletionGracePeriodSeconds; ts != nil && g != nil {
					r.deleted[p.Name] = ts.Add(-time.Duration(*g) * time.Second)
				}
			}
			return len(pods.Items) == 1, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Until(runs[len(runs)-1].scaled.Add(celeryTaskLen + 5*time.Second)))
	for _, r := range runs {
		pods, err := env.Client.CoreV1().Pods(r.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=worker"})
		if err != nil || len(pods.Items) != 1 {
			t.Fatalf("%s: list the remaining worker: %v", r.name, err)
		}
		tasks := celeryTasks(t, env, r.ns, r.redisPod)
		queued, _ := redisCLI(ctx, env, r.ns, r.redisPod, "LLEN", "celery")
		var lost, mustLose, cut []int
		for i, task := range tasks {
			// How long the task still had to run when its pod was deleted (the scale-down for the pod that
			// stayed, or for a removed pod whose deletion the polling missed: earlier, so a lower bound).
			deleted, ok := r.deleted[task.host]
			if !ok {
				deleted = r.scaled
			}
			left := task.start.Add(celeryTaskLen).Sub(deleted)
			t.Logf("%s lastcall: task %d on %s (deleted at the scale-down %+.0fs, to the second), %.1fs left then, ran %d times, done %v",
				r.name, i, task.host, deleted.Sub(r.scaled).Seconds(), left.Seconds(), task.runs, task.done)
			if !task.done {
				lost = append(lost, i)
			}
			if task.host == pods.Items[0].Name {
				if !task.done {
					t.Errorf("%s lastcall: task %d on the pod that stayed was lost", r.name, i)
				}
				continue
			}
			// A task of a removed pod that still had far more than the grace period to run when the pod was
			// deleted is cut by the kubelet's SIGKILL without lastcall; one close to the line may or may not be
			// (the kubelet acts on the deletion a moment later), so it is not counted either way.
			if left > celeryGrace+10*time.Second {
				mustLose = append(mustLose, i)
				if task.done {
					cut = append(cut, i)
				}
			}
		}
		t.Logf("%s lastcall: %d/%d tasks lost %v, %s left in the queue", r.name, len(lost), len(tasks), lost, queued)
		switch r.name {
		case "without":
			if len(mustLose) == 0 {
				t.Fatalf("without lastcall: no task of a removed pod had more than %v left when it was deleted: the scenario did not set up the loss it must show", celeryGrace+10*time.Second)
			}
			if len(cut) > 0 {
				t.Errorf("without lastcall tasks %v finished although they had more than the %v grace period to run: the SIGKILL must cut them", cut, celeryGrace)
			}
		case "with":
			if len(lost) != 0 {
				t.Errorf("with lastcall (celery profile, supervise) tasks %v were lost", lost)
			}
			for i, task := range tasks {
				if task.runs != 1 {
					t.Errorf("with lastcall task %d ran %d times, want once", i, task.runs)
				}
			}
		}
	}
}

// celeryWorkers reads the node names from the output of celery inspect ping ("->  worker@pod: OK").
func celeryWorkers(ping string) []string {
	var names []string
	for _, line := range strings.Split(ping, "\n") {
		if name, ok := strings.CutSuffix(strings.TrimSpace(line), ": OK"); ok {
			names = append(names, strings.TrimSpace(strings.TrimPrefix(name, "->")))
		}
	}
	return names
}

type celeryTask struct {
	host  string
	start time.Time
	runs  int
	done  bool
}

// celeryTasks reads what the tasks recorded in Redis.
func celeryTasks(t *testing.T, env *framework.Env, ns, redisPod string) []celeryTask {
	t.Helper()
	ctx := context.Background()
	hash := func(key string) map[string]string {
		out, err := redisCLI(ctx, env, ns, redisPod, "HGETALL", key)
		if err != nil {
			t.Fatalf("redis HGETALL %s: %v", key, err)
		}
		f := strings.Fields(out)
		m := make(map[string]string, len(f)/2)
		for i := 0; i+1 < len(f); i += 2 {
			m[f[i]] = f[i+1]
		}
		return m
	}
	starts, hosts := hash("start"), hash("host")
	doneOut, err := redisCLI(ctx, env, ns, redisPod, "SMEMBERS", "done")
	if err != nil {
		t.Fatalf("redis SMEMBERS done: %v", err)
	}
	done := map[string]bool{}
	for _, n := range strings.Fields(doneOut) {
		done[n] = true
	}
	tasks := make([]celeryTask, celeryTasksE2E)
	keys := make([]string, len(tasks))
	for i := range keys {
		keys[i] = "runs:" + strconv.Itoa(i)
	}
	// One reply line per key, empty for a task that never ran (--raw prints nil as an empty line), so the
	// output is split as it is: redisCLI's trimming would shift the lines after a leading nil.
	runsOut, err := env.Kubectl(ctx, append([]string{"-n", ns, "exec", redisPod, "--", "redis-cli", "--raw", "MGET"}, keys...)...)
	if err != nil {
		t.Fatalf("redis MGET %v: %v", keys, err)
	}
	runs := strings.Split(strings.TrimSuffix(runsOut, "\n"), "\n")
	if len(runs) != len(tasks) {
		t.Fatalf("redis MGET %v: %d lines, want %d: %q", keys, len(runs), len(tasks), runsOut)
	}
	for i := range tasks {
		key := strconv.Itoa(i)
		tasks[i].runs, _ = strconv.Atoi(strings.TrimSpace(runs[i]))
		sec, err := strconv.ParseFloat(starts[key], 64)
		if err != nil {
			t.Fatalf("task %d start %q: %v", i, starts[key], err)
		}
		tasks[i].start = time.Unix(0, int64(sec*1e9))
		tasks[i].host, tasks[i].done = hosts[key], done[key]
	}
	return tasks
}

// startCeleryRedis starts Redis in the namespace and returns the pod's name once it answers.
func startCeleryRedis(t *testing.T, env *framework.Env, ns string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := env.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "tasks"}, Data: map[string]string{"tasks.py": celeryE2EApp},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := newPod("redis", map[string]string{annProfile: "none"}, corev1.Container{
		Name: "redis", Image: framework.ImageDebianWorker, ImagePullPolicy: corev1.PullIfNotPresent,
		Command:      []string{"redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"},
		Env:          []corev1.EnvVar{{Name: "REDIS_URL", Value: "redis://127.0.0.1:6379/0"}},
		VolumeMounts: []corev1.VolumeMount{{Name: "tasks", MountPath: "/app"}},
	})
	pod.Spec.Volumes = []corev1.Volume{{Name: "tasks", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: "tasks"}}}}}
	createPod(t, env, ns, pod)
	if _, err := env.WaitForPodRunning(ctx, ns, "redis", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := framework.WaitFor(ctx, time.Minute, "redis to answer", func(ctx context.Context) (bool, error) {
		out, _ := redisCLI(ctx, env, ns, "redis", "PING")
		return out == "PONG", nil
	}); err != nil {
		t.Fatal(err)
	}
	return "redis"
}

func podIP(t *testing.T, env *framework.Env, ns, name string) string {
	t.Helper()
	p, err := env.Client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil || p.Status.PodIP == "" {
		t.Fatalf("pod %s/%s IP: %v", ns, name, err)
	}
	return p.Status.PodIP
}

func redisCLI(ctx context.Context, env *framework.Env, ns, pod string, args ...string) (string, error) {
	out, err := env.Kubectl(ctx, append([]string{"-n", ns, "exec", pod, "--", "redis-cli", "--raw"}, args...)...)
	return strings.TrimSpace(out), err
}

// celeryDeployment is the manifest a user would write: a shell entrypoint that does not exec, no grace period
// of its own (the API's 30 s), the celery profile and supervision asked for by annotation (ignored without
// lastcall).
func celeryDeployment(redisURL string) *appsv1.Deployment {
	labels := map[string]string{"app": "worker"}
	entry := "cd /app && celery -A tasks worker --pool prefork --concurrency 2 --loglevel INFO --without-gossip --without-mingle --without-heartbeat -n worker@$(hostname)"
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "worker"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(celeryReplicas)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{annProfile: "celery", annSupervise: "true"}},
				Spec: corev1.PodSpec{
					DNSPolicy: corev1.DNSDefault,
					Containers: []corev1.Container{{
						Name: "worker", Image: framework.ImageDebianWorker, ImagePullPolicy: corev1.PullIfNotPresent,
						Command:      []string{"sh", "-c", entry},
						Env:          []corev1.EnvVar{{Name: "REDIS_URL", Value: redisURL}},
						VolumeMounts: []corev1.VolumeMount{{Name: "tasks", MountPath: "/app"}},
					}},
					Volumes: []corev1.Volume{{Name: "tasks", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
						LocalObjectReference: corev1.LocalObjectReference{Name: "tasks"}}}}},
				},
			},
		},
	}
}
