// Package chart checks deploy/helm/loom: helm lint, helm template, and the
// rendered manifests decoded strictly into the Kubernetes API's own Go
// types (k8s.io/api, and prometheus-operator's for the ServiceMonitor), so
// a misspelt or misplaced field, a wrong type or an unknown kind fails, as
// the API server would refuse it. It stands in for kubeconform, whose
// schemas are downloaded from GitHub, which this project cannot reach.
package chart

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientscheme "k8s.io/client-go/kubernetes/scheme"
)

const chart = "../../deploy/helm/loom"

// valueSets are the values the chart is checked with: its defaults, and
// every optional part on.
var valueSets = map[string][]string{
	"defaults":   nil,
	"everything": {"-f", "testdata/everything.yaml"},
}

func helm(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"tool", "helm"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out)
}

func TestChartLints(t *testing.T) {
	for name, values := range valueSets {
		t.Run(name, func(t *testing.T) {
			helm(t, append([]string{"lint", "--strict", chart}, values...)...)
		})
	}
}

// objects is what the chart renders with values, each decoded strictly.
func objects(t *testing.T, values []string) []runtime.Object {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := monitoringv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	decoder := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	out := helm(t, append([]string{"template", "loom", chart, "--namespace", "migrations"}, values...)...)
	r := utilyaml.NewYAMLReader(bufioReader(out))
	var objs []runtime.Object
	for {
		doc, err := r.Read()
		if err != nil {
			break
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, gvk, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("a rendered manifest does not decode strictly: %v\n%s", err, doc)
		}
		if gvk.Version == "" || gvk.Kind == "" {
			t.Fatalf("no apiVersion or kind:\n%s", doc)
		}
		objs = append(objs, obj)
	}
	if len(objs) == 0 {
		t.Fatal("helm template rendered nothing")
	}
	return objs
}

func TestRenderedManifestsAreValidAndKeepTheAdminPortPrivate(t *testing.T) {
	serveEnv := loomServeVariables(t)
	admin := adminPaths(t)
	for name, values := range valueSets {
		t.Run(name, func(t *testing.T) {
			var (
				dep      *appsv1.Deployment
				services []*corev1.Service
				pdb      *policyv1.PodDisruptionBudget
				hpa      *autoscalingv2.HorizontalPodAutoscaler
				sm       *monitoringv1.ServiceMonitor
				kinds    []string
			)
			for _, o := range objects(t, values) {
				switch o := o.(type) {
				case *appsv1.Deployment:
					dep = o
				case *corev1.Service:
					services = append(services, o)
				case *policyv1.PodDisruptionBudget:
					pdb = o
				case *autoscalingv2.HorizontalPodAutoscaler:
					hpa = o
				case *monitoringv1.ServiceMonitor:
					sm = o
				}
				kinds = append(kinds, fmt.Sprintf("%T", o))
			}
			if dep == nil || len(services) == 0 || pdb == nil {
				t.Fatalf("rendered %v: a Deployment, a Service and a PodDisruptionBudget are always there", kinds)
			}
			pod := dep.Spec.Template
			sel, err := labels.ValidatedSelectorFromSet(dep.Spec.Selector.MatchLabels)
			if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
				t.Fatalf("the Deployment's selector %v does not select its pods %v", dep.Spec.Selector, pod.Labels)
			}
			c := pod.Spec.Containers[0]
			ports := map[string]int32{}
			for _, p := range c.Ports {
				ports[p.Name] = p.ContainerPort
			}
			env := map[string]string{}
			for _, e := range c.Env {
				env[e.Name] = e.Value
				if strings.HasPrefix(e.Name, "LOOM_") && !serveEnv[e.Name] {
					t.Errorf("%s is no variable of loom serve", e.Name)
				}
			}
			// What loom serve listens on is what the pod declares.
			if env["LOOM_ADDR"] != fmt.Sprintf(":%d", ports["api"]) || env["LOOM_ADMIN_ADDR"] != fmt.Sprintf(":%d", ports["admin"]) {
				t.Errorf("loom listens on %q and %q, the pod declares %v", env["LOOM_ADDR"], env["LOOM_ADMIN_ADDR"], ports)
			}
			for _, p := range []struct {
				probe *corev1.Probe
				path  string
			}{{c.ReadinessProbe, "/readyz"}, {c.LivenessProbe, "/healthz"}} {
				if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "admin" {
					t.Errorf("probe %+v: want GET %s on the admin port", p.probe, p.path)
				}
				if !slices.Contains(admin, p.path) {
					t.Errorf("the admin server serves %v, not %s", admin, p.path)
				}
			}
			if env["LOOM_KEYS_FILE"] == "" || env["LOOM_REDIS_ADDR"] == "" || env["LOOM_TEMPORAL_ADDR"] == "" {
				t.Errorf("env %v: keys, Redis and Temporal are needed", env)
			}
			psc, csc := pod.Spec.SecurityContext, c.SecurityContext
			if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
				t.Errorf("the pod must run as non-root on a read-only root: %+v %+v", psc, csc)
			}
			for _, s := range services {
				for _, p := range s.Spec.Ports {
					toAdmin := p.TargetPort.String() == "admin" || p.TargetPort.IntValue() == int(ports["admin"]) || p.Port == ports["admin"]
					if toAdmin && s.Spec.ClusterIP != corev1.ClusterIPNone {
						t.Errorf("Service %s exposes the admin port: %+v", s.Name, p)
					}
				}
				if s.Spec.ClusterIP != corev1.ClusterIPNone && !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(pod.Labels)) {
					t.Errorf("Service %s selects %v, not the pods", s.Name, s.Spec.Selector)
				}
			}
			if ps, err := labels.ValidatedSelectorFromSet(pdb.Spec.Selector.MatchLabels); err != nil || !ps.Matches(labels.Set(pod.Labels)) {
				t.Errorf("the PodDisruptionBudget selects %v, not the pods", pdb.Spec.Selector)
			}
			if name == "everything" {
				if hpa == nil || hpa.Spec.ScaleTargetRef.Name != dep.Name || dep.Spec.Replicas != nil {
					t.Errorf("with autoscaling the HPA scales the Deployment, which sets no replicas: %+v", hpa)
				}
				if sm == nil || sm.Spec.Endpoints[0].Port != "admin" || sm.Spec.Endpoints[0].Path != "/metrics" {
					t.Errorf("ServiceMonitor %+v: want /metrics on the admin port", sm)
				}
			} else if hpa != nil || sm != nil {
				t.Errorf("by default neither an HPA nor a ServiceMonitor: %v", kinds)
			}
		})
	}
}

// loomServeVariables are the LOOM_* variables of loom serve's flags, read
// from what `loom serve -h` prints.
func loomServeVariables(t *testing.T) map[string]bool {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "loom")
	if out, err := exec.Command("go", "-C", "../..", "build", "-o", bin, "./cmd/loom").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/loom: %v\n%s", err, out)
	}
	out, _ := exec.Command(bin, "serve", "-h").CombinedOutput() // -h exits 2
	vars := map[string]bool{}
	for _, m := range regexp.MustCompile(`\(\$(LOOM_[A-Z0-9_]+)\)`).FindAllStringSubmatch(string(out), -1) {
		vars[m[1]] = true
	}
	if !vars["LOOM_REDIS_ADDR"] || !vars["LOOM_TEMPORAL_ADDR"] {
		t.Fatalf("read no variables from loom serve -h:\n%s", out)
	}
	return vars
}

// adminPaths are the paths server/admin.go serves.
func adminPaths(t *testing.T) []string {
	t.Helper()
	src, err := os.ReadFile("../../server/admin.go")
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, m := range regexp.MustCompile(`mux\.Handle(?:Func)?\("GET (/[^"]*)"`).FindAllStringSubmatch(string(src), -1) {
		paths = append(paths, m[1])
	}
	return paths
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			b.Write(l)
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }
