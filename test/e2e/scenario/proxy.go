//go:build e2e

package scenario

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/lastcall-dev/lastcall/test/e2e/framework"
)

// Upstream is the name of the slow upstream pod of scenario 3.
const Upstream = "upstream"

// nginx alone, proxying every request to one upstream address (scenario 3: the slow part is elsewhere).
const nginxProxyConf = nginxPreamble + `  client_body_temp_path /tmp/nginx-body;
  proxy_temp_path /tmp/nginx-proxy;
  server {
    listen 80;
    location = /ready { proxy_pass http://UPSTREAM/healthz; }
    location / { proxy_pass http://UPSTREAM; proxy_read_timeout 60s; }
  }
}
`

// DeployNginxProxy prepares scenario 3 in ns: a testapp pod serving /slow (never restarted by the scenario;
// opted out of lastcall so both runs have the same upstream), then the ConfigMap and the nginx-only Deployment
// "web" and its Service, proxying to the upstream's pod IP (the local cluster has no kube-proxy or DNS).
// Use it as RolloutOptions.Deploy.
func DeployNginxProxy(ctx context.Context, env *framework.Env, ns string, replicas int32) error {
	up := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: Upstream, Labels: map[string]string{framework.LabelInject: "disabled"}},
		Spec: corev1.PodSpec{
			DNSPolicy: corev1.DNSDefault,
			Containers: []corev1.Container{{
				Name: "app", Image: framework.ImageTestapp, ImagePullPolicy: corev1.PullIfNotPresent,
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1},
			}},
		},
	}
	if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, up, metav1.CreateOptions{}); err != nil {
		return err
	}
	p, err := env.WaitForPodReady(ctx, ns, Upstream, 90*time.Second)
	if err != nil {
		return err
	}
	if err := env.CheckTarget(p.Status.PodIP); err != nil {
		return err
	}
	labels := map[string]string{"app": WebApp}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: WebApp},
		Data:       map[string]string{"nginx.conf": strings.ReplaceAll(nginxProxyConf, "UPSTREAM", fmt.Sprintf("%s:8080", p.Status.PodIP))},
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: WebApp, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					DNSPolicy: corev1.DNSDefault,
					Volumes:   []corev1.Volume{{Name: "conf", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: WebApp}}}}},
					Containers: []corev1.Container{{
						Name:            "nginx",
						Image:           framework.ImageDebianWeb,
						ImagePullPolicy: corev1.PullIfNotPresent,
						Command:         []string{"nginx", "-c", "/etc/demo/nginx.conf", "-g", "daemon off;"},
						Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: 80}},
						VolumeMounts:    []corev1.VolumeMount{{Name: "conf", MountPath: "/etc/demo", ReadOnly: true}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(80)}},
							PeriodSeconds: 1, FailureThreshold: 1,
						},
					}},
				},
			},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: WebApp},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(80)}}},
	}
	if _, err := env.Client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := env.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return err
	}
	_, err = env.Client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
	return err
}
