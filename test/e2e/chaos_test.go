//go:build e2e

package e2e

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/lastcall-dev/lastcall/test/e2e/framework"
)

// Chaos: lastcall sits on the pod-creation path of every opted-in namespace, so its own restarts, crashes,
// upgrades and certificate rotations must not cost pod CREATEs. A steady stream of CREATEs runs while each
// fault happens in turn; every CREATE is counted as refused, admitted without injection, or injected.
//
// The stream rate and the settle time after each fault are bounded so that the whole test stays within a few
// minutes on two cores.
const (
	chaosRate     = 10 // CREATEs per second
	chaosInFlight = 32
	chaosSettle   = 3 * time.Second
	// The webhook's timeoutSeconds (chart default): no CREATE may wait longer than that on lastcall.
	webhookTimeout = 5 * time.Second
	haValues       = "charts/lastcall/values-ha.yaml"
	failOpenMetric = "apiserver_admission_webhook_fail_open_count"
)

const (
	phaseRestart       = "rolling-restart"
	phaseUpgrade       = "helm-upgrade"
	phaseKill          = "kill-a-ready-replica-every-3s"
	phaseRotate        = "serving-cert-rotation"
	phaseNoReplica     = "no-replica-for-5s"
	phaseToAbrupt      = "upgrade-to-no-preStop-no-drain"
	phaseRestartAbrupt = "rolling-restart-no-preStop"
	phaseBackGraceful  = "upgrade-back-to-graceful"
)

// TestChaos runs the faults with failurePolicy Ignore (the default values) and then with Fail
// (values-ha.yaml), and with Fail also without the graceful-shutdown settings, to show what they buy.
// Not parallel: it restarts, scales and reconfigures the lastcall every other test uses, and puts the
// default install back at the end.
func TestChaos(t *testing.T) {
	env := framework.Current(t)
	t.Cleanup(func() {
		if err := env.InstallLastcall(context.Background()); err != nil {
			t.Errorf("restore the default lastcall install: %v", err)
		}
	})

	t.Run("Ignore", func(t *testing.T) {
		ctx := context.Background()
		const replicas = 2
		if err := env.InstallLastcall(ctx); err != nil {
			t.Fatal(err)
		}
		match := `name="pods.lastcall.dev"`
		openBefore, err := apiserverMetric(ctx, env, failOpenMetric, match)
		if err != nil {
			t.Fatal(err)
		}
		ns := env.Namespace(t, optedIn)
		s := startStream(t, env, ns, chaosRate, chaosInFlight)
		time.Sleep(chaosSettle)
		s.fault(t, phaseRestart, chaosSettle, rollingRestart(env, replicas))
		s.fault(t, phaseUpgrade, chaosSettle, helmUpgrade(env, replicas, nil, "podAnnotations.chaos=upgraded"))
		s.fault(t, phaseKill, chaosSettle, killReplicas(env, replicas, 4, 3*time.Second))
		s.fault(t, phaseRotate, chaosSettle, rotateSelfCert(env))
		s.fault(t, phaseNoReplica, chaosSettle, noReplica(env, replicas, 5*time.Second))
		time.Sleep(chaosSettle)
		s.halt()
		order, m := s.report(t, "failurePolicy Ignore, 2 replicas, "+fmt.Sprint(chaosRate)+" CREATEs/s")
		openAfter, err := apiserverMetric(ctx, env, failOpenMetric, match)
		if err != nil {
			t.Fatal(err)
		}
		uninjected := 0
		for _, p := range order {
			got := m[p]
			uninjected += got.Uninjected
			if got.Refused > 0 {
				t.Errorf("%s: %d CREATEs refused with failurePolicy Ignore: %v", p, got.Refused, got.FirstErr)
			}
			if p != phaseNoReplica && got.Uninjected > 0 {
				t.Errorf("%s: %d pods admitted without injection while a replica was alive", p, got.Uninjected)
			}
		}
		// The control: with no replica the stream does see uninjected pods, and the API server counts each
		// fail-open call.
		if m[phaseNoReplica].Uninjected == 0 {
			t.Errorf("%s: no pod admitted without injection: the stream did not run while lastcall was gone", phaseNoReplica)
		}
		t.Logf("%s{%s}: %v -> %v (+%v); uninjected pods: %d", failOpenMetric, match, openBefore, openAfter, openAfter-openBefore, uninjected)
		if openAfter-openBefore < float64(uninjected) {
			t.Errorf("%s rose by %v, less than the %d pods admitted without injection", failOpenMetric, openAfter-openBefore, uninjected)
		}
	})

	t.Run("Fail", func(t *testing.T) {
		ctx := context.Background()
		const replicas = 3
		ha := []string{haValues}
		if err := env.InstallLastcallWith(ctx, ha); err != nil {
			t.Fatal(err)
		}
		ns := env.Namespace(t, optedIn)
		s := startStream(t, env, ns, chaosRate, chaosInFlight)
		time.Sleep(chaosSettle)
		s.fault(t, phaseRestart, chaosSettle, rollingRestart(env, replicas))
		s.fault(t, phaseKill, chaosSettle, killReplicas(env, replicas, 4, 3*time.Second))
		s.fault(t, phaseRotate, chaosSettle, rotateSelfCert(env))
		s.fault(t, phaseNoReplica, chaosSettle, noReplica(env, replicas, 5*time.Second))
		// The same rolling restart without lastcall's own graceful shutdown, then back.
		s.fault(t, phaseToAbrupt, chaosSettle, helmUpgrade(env, replicas, ha, "shutdown.preStopSleepSeconds=0", "shutdown.drainSeconds=0"))
		s.fault(t, phaseRestartAbrupt, chaosSettle, rollingRestart(env, replicas))
		s.fault(t, phaseBackGraceful, chaosSettle, helmUpgrade(env, replicas, ha))
		time.Sleep(chaosSettle)
		s.halt()
		order, m := s.report(t, "failurePolicy Fail (values-ha.yaml), 3 replicas, "+fmt.Sprint(chaosRate)+" CREATEs/s")
		for _, p := range order {
			got := m[p]
			if got.Uninjected > 0 {
				t.Errorf("%s: %d pods admitted without injection with failurePolicy Fail", p, got.Uninjected)
			}
			switch p {
			case phaseNoReplica, phaseRestartAbrupt, phaseBackGraceful:
				// No replica at all, or replicas stopping without the graceful settings: measured, reported.
				continue
			}
			if got.Refused > 0 {
				t.Errorf("%s: %d CREATEs refused while a replica was alive: %v", p, got.Refused, got.FirstErr)
			}
			if got.Worst >= webhookTimeout {
				t.Errorf("%s: worst CREATE took %v, not under the webhook timeout %v", p, got.Worst, webhookTimeout)
			}
		}
		if m[phaseNoReplica].Refused == 0 {
			t.Errorf("%s: no CREATE refused: the stream did not run while lastcall was gone", phaseNoReplica)
		}
		abrupt := m[phaseRestartAbrupt].Refused + m[phaseBackGraceful].Refused
		t.Logf("rolling restarts of 3 replicas: refused %d with preStop sleep + drain, %d without (two rollouts each)",
			m[phaseRestart].Refused+m[phaseToAbrupt].Refused, abrupt)
	})
}

// waitSettled waits for the wanted number of ready webhook replicas, the CA bundle, and no terminating
// webhook pod: a replica that is still stopping is still part of the fault.
func waitSettled(ctx context.Context, env *framework.Env, replicas int) error {
	if err := env.WaitLastcallReady(ctx, 3*time.Minute); err != nil {
		return err
	}
	return framework.WaitFor(ctx, 2*time.Minute, "no terminating lastcall pod", func(ctx context.Context) (bool, error) {
		l, err := env.Client.CoreV1().Pods(framework.LastcallNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=lastcall"})
		return err == nil && len(l.Items) == replicas, nil
	})
}

func rollingRestart(env *framework.Env, replicas int) func(context.Context) error {
	return func(ctx context.Context) error {
		d := "deployment/" + framework.LastcallDeployment
		if _, err := env.Kubectl(ctx, "rollout", "restart", "-n", framework.LastcallNamespace, d); err != nil {
			return err
		}
		if _, err := env.Kubectl(ctx, "rollout", "status", "-n", framework.LastcallNamespace, d, "--timeout=3m"); err != nil {
			return err
		}
		return waitSettled(ctx, env, replicas)
	}
}

func helmUpgrade(env *framework.Env, replicas int, files []string, sets ...string) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := env.InstallLastcallWith(ctx, files, sets...); err != nil {
			return err
		}
		return waitSettled(ctx, env, replicas)
	}
}

// killReplicas force-deletes a ready webhook pod every `every` (the container is killed: no preStop, no
// drain), n times, but only while another replica is ready: the fault is one replica crashing, not all of
// them (that is noReplica). Then it waits for the Deployment to heal.
func killReplicas(env *framework.Env, replicas, n int, every time.Duration) func(context.Context) error {
	return func(ctx context.Context) error {
		for killed := 0; killed < n; {
			time.Sleep(every)
			pods, err := lastcallPods(ctx, env)
			if err != nil {
				return err
			}
			var ready []corev1.Pod
			for _, p := range pods {
				if podReady(&p) {
					ready = append(ready, p)
				}
			}
			if len(ready) < 2 {
				continue
			}
			victim := ready[killed%len(ready)].Name
			if err := env.Client.CoreV1().Pods(framework.LastcallNamespace).Delete(ctx, victim,
				metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))}); err != nil {
				return fmt.Errorf("force delete %s: %w", victim, err)
			}
			killed++
		}
		return waitSettled(ctx, env, replicas)
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// noReplica scales the webhook to zero, keeps it there for hold, and scales it back.
func noReplica(env *framework.Env, replicas int, hold time.Duration) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := env.ScaleLastcall(ctx, 0); err != nil {
			return err
		}
		time.Sleep(hold)
		if err := env.ScaleLastcall(ctx, replicas); err != nil {
			return err
		}
		return waitSettled(ctx, env, replicas)
	}
}

// rotateSelfCert forces a rotation of the self-managed serving certificate the way expiry does: the
// rotator finds no valid server certificate in its Secret and issues a new one from the same CA (the CA
// bundle stays). Done when every replica serves the new certificate.
func rotateSelfCert(env *framework.Env) func(context.Context) error {
	return func(ctx context.Context) error {
		secrets := env.Client.CoreV1().Secrets(framework.LastcallNamespace)
		name := framework.LastcallRelease + "-webhook-tls"
		sec, err := secrets.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		old, err := pemCertHash(sec.Data[corev1.TLSCertKey])
		if err != nil {
			return fmt.Errorf("secret %s: %w", name, err)
		}
		sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey] = []byte{}, []byte{}
		if _, err := secrets.Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
			return err
		}
		return waitServed(ctx, env, name, old)
	}
}

// waitServed waits until the Secret holds a certificate other than old and every webhook replica serves it.
func waitServed(ctx context.Context, env *framework.Env, secret, old string) error {
	var last string
	err := framework.WaitFor(ctx, 2*time.Minute, "every replica serving the new certificate", func(ctx context.Context) (bool, error) {
		sec, err := env.Client.CoreV1().Secrets(framework.LastcallNamespace).Get(ctx, secret, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		cur, err := pemCertHash(sec.Data[corev1.TLSCertKey])
		if err != nil || cur == old {
			last = "secret not renewed yet"
			return false, nil
		}
		pods, err := lastcallPods(ctx, env)
		if err != nil {
			return false, nil
		}
		for _, p := range pods {
			h, err := servedCertHash(ctx, env, p)
			if err != nil || h != cur {
				last = fmt.Sprintf("pod %s serves %s (err %v), secret has %s", p.Name, h, err, cur)
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("%w (%s)", err, last)
	}
	return nil
}

func pemCertHash(data []byte) (string, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return "", errors.New("no PEM certificate")
	}
	return certHash(b.Bytes), nil
}
