//go:build e2e

// Package scenario holds the rollout-under-load scenarios shared by the e2e tests and `make demo`: the
// workloads (nginx + php-fpm over FastCGI on a shared unix socket), an endpoint-following load client built on
// internal/loadgen, and the rollout driver.
package scenario

import (
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/lastcall-dev/lastcall/test/e2e/framework"
)

// WebApp is the name of the nginx + php-fpm Deployment, its Service and its ConfigMap.
const WebApp = "web"

// nginxPreamble starts every scenario's nginx.conf: pid file under /tmp, errors on stderr, no access log (the
// load is large). The http block is left open for the rest of each config.
const nginxPreamble = `worker_processes 2;
error_log stderr notice;
pid /tmp/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
`

// nginx proxies everything to php-fpm on a unix socket; /ready goes through php-fpm's ping, so the pod is only
// Ready when both servers answer. No access log (the load is large), errors on stderr.
const nginxConf = nginxPreamble + `  keepalive_timeout 65s;
  client_body_temp_path /tmp/nginx-body;
  fastcgi_temp_path /tmp/nginx-fastcgi;
  server {
    listen 80;
    location = /ready {
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_NAME /fpm-ping;
      fastcgi_param SCRIPT_FILENAME /fpm-ping;
      fastcgi_pass unix:/run/php/fpm.sock;
    }
    location / {
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME /etc/demo/slow.php;
      fastcgi_read_timeout 60s;
      fastcgi_pass unix:/run/php/fpm.sock;
    }
  }
}
`

// phpFPMConf (%CHILDREN% children, static): process_control_timeout lets the master wait for its children on SIGQUIT (0, the default, makes
// even the graceful signal kill in-flight requests); 20 s fits the php-fpm profile's 30 s budget.
const phpFPMConf = `[global]
error_log = /proc/self/fd/2
daemonize = no
process_control_timeout = %PCT%
[www]
user = www-data
group = www-data
listen = /run/php/fpm.sock
listen.mode = 0666
pm = static
pm.max_children = %CHILDREN%
ping.path = /fpm-ping
catch_workers_output = yes
`

// slowPHP answers /slow?ms=N after N ms of work. It sleeps in short steps up to a deadline rather than one
// usleep: a signal interrupts usleep, and the request must still take its full time.
const slowPHP = `<?php
$ms = isset($_GET['ms']) ? (int)$_GET['ms'] : 1000;
$end = microtime(true) + $ms / 1000.0;
while (($left = $end - microtime(true)) > 0) {
    usleep((int)min(20000, $left * 1e6));
}
echo "slow $ms ms from " . gethostname() . "\n";
`

// WebAppObjects returns the ConfigMap, Deployment and Service of the nginx + php-fpm app. The manifests are the
// same with and without lastcall: only the namespace's label differs. processControlTimeout is php-fpm's
// setting (e.g. "20s"; "0" for the check scenario).
func WebAppObjects(replicas int32, processControlTimeout string) (*corev1.ConfigMap, *appsv1.Deployment, *corev1.Service) {
	return webAppObjects(replicas, processControlTimeout, 12)
}

// webAppObjects is WebAppObjects with php-fpm's number of children: the ingress scenarios need more, since
// their open-loop load keeps ~45 requests in flight, all on one pod after a scale-down to 1.
func webAppObjects(replicas int32, processControlTimeout string, children int) (*corev1.ConfigMap, *appsv1.Deployment, *corev1.Service) {
	labels := map[string]string{"app": WebApp}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: WebApp},
		Data: map[string]string{
			"nginx.conf":   nginxConf,
			"php-fpm.conf": strings.NewReplacer("%PCT%", processControlTimeout, "%CHILDREN%", strconv.Itoa(children)).Replace(phpFPMConf),
			"slow.php":     slowPHP,
		},
	}
	mounts := []corev1.VolumeMount{{Name: "conf", MountPath: "/etc/demo", ReadOnly: true}, {Name: "run-php", MountPath: "/run/php"}}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: WebApp, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					DNSPolicy: corev1.DNSDefault, // no cluster DNS on the local cluster
					Volumes: []corev1.Volume{
						{Name: "conf", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: WebApp}}}},
						{Name: "run-php", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					},
					Containers: []corev1.Container{
						{
							Name:            "nginx",
							Image:           framework.ImageDebianWeb,
							ImagePullPolicy: corev1.PullIfNotPresent,
							Command:         []string{"nginx", "-c", "/etc/demo/nginx.conf", "-g", "daemon off;"},
							Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: 80}},
							VolumeMounts:    mounts,
							ReadinessProbe: &corev1.Probe{
								ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(80)}},
								PeriodSeconds: 1, FailureThreshold: 1,
							},
						},
						{
							Name:            "php",
							Image:           framework.ImageDebianWeb,
							ImagePullPolicy: corev1.PullIfNotPresent,
							Command:         []string{"php-fpm8.2", "--nodaemonize", "--fpm-config", "/etc/demo/php-fpm.conf"},
							VolumeMounts:    mounts,
						},
					},
				},
			},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: WebApp},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(80)}},
		},
	}
	return cm, d, svc
}
