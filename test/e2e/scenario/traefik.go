//go:build e2e

package scenario

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/lastcall-dev/lastcall/test/e2e/framework"
)

// Traefik as the ingress scenarios run it: one replica in its own namespace, its Kubernetes Ingress provider
// reading Ingresses, Services and EndpointSlices of every namespace.
const (
	IngressNamespace = "lastcall-ingress"
	TraefikName      = "traefik"
	ImageTraefik     = "local.test/traefik:1" // hack/images.sh traefik (the version is in hack/build-traefik.sh)
	IngressClassName = "traefik"
	traefikWebPort   = 8000
	traefikAPIPort   = 8080
)

// TraefikArgs is Traefik's whole static configuration. Everything that decides how it balances, retries,
// times out or follows endpoints is left at Traefik's defaults; the flags only say where to listen and what to
// expose:
//   - the web entry point on :8000 (the container runs as non-root and cannot bind :80);
//   - the Kubernetes Ingress provider (Ingresses of every namespace, their Services' EndpointSlices);
//   - the API on the "traefik" entry point (:8080, the default), read by the test to see which servers Traefik
//     routes to at each moment, and /ping there for the readiness probe;
//   - no version check and no usage report: no traffic leaves this machine.
var TraefikArgs = []string{
	"--entryPoints.web.address=:" + strconv.Itoa(traefikWebPort),
	"--providers.kubernetesingress=true",
	"--api.insecure=true",
	"--ping=true",
	"--global.checkNewVersion=false",
	"--global.sendAnonymousUsage=false",
	"--log.level=INFO",
}

// Traefik is the running ingress.
type Traefik struct {
	Pod     string
	IP      string // the pod's IP: inside the cluster's pod network, which this host reaches (local provider)
	Version string // as Traefik reports it (/api/version)
	api     *http.Client
}

// WebAddr is the address the load is sent to.
func (t *Traefik) WebAddr() string { return net.JoinHostPort(t.IP, strconv.Itoa(traefikWebPort)) }

func (t *Traefik) apiURL(path string) string {
	return "http://" + net.JoinHostPort(t.IP, strconv.Itoa(traefikAPIPort)) + path
}

// InstallTraefik creates (or reuses) Traefik in IngressNamespace with the RBAC its Ingress provider needs and
// the IngressClass "traefik", waits until it answers, and returns where it is. The namespace is not opted in
// and the pod opts out of lastcall: the ingress is the observer, not a workload under test.
func InstallTraefik(ctx context.Context, env *framework.Env) (*Traefik, error) {
	if !env.Provider.PodNetworkReachable() {
		return nil, fmt.Errorf("the ingress scenarios send their load to Traefik's pod IP, which this host cannot reach on provider %s", env.Provider.Name())
	}
	cs := env.Client
	labels := map[string]string{"app": TraefikName}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: IngressNamespace}}
	_, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err := ignoreExists("namespace "+IngressNamespace, err); err != nil {
		return nil, err
	}
	if err := framework.WaitFor(ctx, 30*time.Second, "default ServiceAccount in "+IngressNamespace, func(ctx context.Context) (bool, error) {
		_, err = cs.CoreV1().ServiceAccounts(IngressNamespace).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		return nil, err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: TraefikName, Labels: labels}}
	_, err = cs.CoreV1().ServiceAccounts(IngressNamespace).Create(ctx, sa, metav1.CreateOptions{})
	if err := ignoreExists("ServiceAccount", err); err != nil {
		return nil, err
	}
	role := IngressNamespace + "-" + TraefikName
	cr := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: role, Labels: labels}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"services", "secrets", "nodes"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses", "ingressclasses"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses/status"}, Verbs: []string{"update"}},
	}}
	_, err = cs.RbacV1().ClusterRoles().Create(ctx, cr, metav1.CreateOptions{})
	if err := ignoreExists("ClusterRole", err); err != nil {
		return nil, err
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role, Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: TraefikName, Namespace: IngressNamespace}},
	}
	_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{})
	if err := ignoreExists("ClusterRoleBinding", err); err != nil {
		return nil, err
	}
	ic := &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: IngressClassName, Labels: labels},
		Spec: networkingv1.IngressClassSpec{Controller: "traefik.io/ingress-controller"}}
	_, err = cs.NetworkingV1().IngressClasses().Create(ctx, ic, metav1.CreateOptions{})
	if err := ignoreExists("IngressClass", err); err != nil {
		return nil, err
	}
	podLabels := map[string]string{"app": TraefikName, framework.LabelInject: "disabled"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: TraefikName, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec: corev1.PodSpec{
					ServiceAccountName: TraefikName,
					DNSPolicy:          corev1.DNSDefault, // no cluster DNS on the local cluster
					SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](65532),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
					Containers: []corev1.Container{{
						Name: TraefikName, Image: ImageTraefik, ImagePullPolicy: corev1.PullIfNotPresent, Args: TraefikArgs,
						Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: traefikWebPort}, {Name: "traefik", ContainerPort: traefikAPIPort}},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ping", Port: intstr.FromInt32(traefikAPIPort)}},
							PeriodSeconds: 1},
						SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
							Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
					}},
				},
			},
		},
	}
	_, err = cs.AppsV1().Deployments(IngressNamespace).Create(ctx, d, metav1.CreateOptions{})
	if err := ignoreExists("Deployment", err); err != nil {
		return nil, err
	}
	var pod *corev1.Pod
	if err := framework.WaitFor(ctx, 2*time.Minute, "Traefik ready", func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(IngressNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + TraefikName})
		if err != nil {
			return false, nil
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.DeletionTimestamp == nil && podReady(p) {
				pod = p
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		return nil, err
	}
	if err := env.CheckTarget(pod.Status.PodIP); err != nil {
		return nil, err
	}
	t := &Traefik{Pod: pod.Name, IP: pod.Status.PodIP, api: &http.Client{Timeout: 2 * time.Second}}
	var v struct{ Version string }
	if err := t.getJSON(ctx, "/api/version", &v); err != nil {
		return nil, fmt.Errorf("read the version of Traefik: %w", err)
	}
	t.Version = v.Version
	return t, nil
}

// ignoreExists lets a second run (the demo again, the next test) reuse what the first created.
func ignoreExists(what string, err error) error {
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating %s: %w", what, err)
	}
	return nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (t *Traefik) getJSON(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.apiURL(path), nil)
	if err != nil {
		return err
	}
	resp, err := t.api.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.Unmarshal(b, v)
}

// Servers is what Traefik balances a service over at one moment: the addresses ("IP:port") it picks for new
// requests, and the fenced ones (terminating endpoints that are still serving, which it no longer picks).
type Servers struct {
	At             time.Time
	Active, Fenced []string
}

// servers reads the load balancer of the Ingress provider's service for ns/service.
func (t *Traefik) servers(ctx context.Context, ns, service string) (Servers, error) {
	var svcs []struct {
		Name         string `json:"name"`
		Provider     string `json:"provider"`
		LoadBalancer *struct {
			Servers []struct {
				URL    string `json:"url"`
				Fenced bool   `json:"fenced"`
			} `json:"servers"`
		} `json:"loadBalancer"`
	}
	if err := t.getJSON(ctx, "/api/http/services", &svcs); err != nil {
		return Servers{}, err
	}
	s := Servers{At: time.Now()}
	// The Ingress provider names a backend namespace-service-port.
	prefix := ns + "-" + service + "-"
	for _, svc := range svcs {
		if svc.Provider != "kubernetes" || !strings.HasPrefix(svc.Name, prefix) || svc.LoadBalancer == nil {
			continue
		}
		for _, srv := range svc.LoadBalancer.Servers {
			addr := strings.TrimPrefix(srv.URL, "http://")
			if srv.Fenced {
				s.Fenced = append(s.Fenced, addr)
			} else {
				s.Active = append(s.Active, addr)
			}
		}
	}
	return s, nil
}

// Ingress is the Ingress of the app "web" in ns: host web.<ns>.test (only ever a Host header; nothing
// resolves it), every path to the Service's port 80.
func Ingress(ns string) *networkingv1.Ingress {
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: WebApp},
		Spec: networkingv1.IngressSpec{
			IngressClassName: ptr.To(IngressClassName),
			Rules: []networkingv1.IngressRule{{
				Host: IngressHost(ns),
				IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
					Path: "/", PathType: ptr.To(networkingv1.PathTypePrefix),
					Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: WebApp, Port: networkingv1.ServiceBackendPort{Number: 80}}},
				}}}},
			}},
		},
	}
}

// IngressHost is the host of ns's Ingress rule.
func IngressHost(ns string) string { return WebApp + "." + ns + ".test" }
