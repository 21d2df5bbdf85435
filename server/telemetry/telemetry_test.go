package telemetry_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/loomhq/loom/server/telemetry"
)

func TestNoVariablesNoExport(t *testing.T) {
	for _, env := range [][2]string{{"", ""}, {"OTEL_TRACES_EXPORTER", "none"}, {"OTEL_SDK_DISABLED", "true"}} {
		if env[0] != "" {
			t.Setenv(env[0], env[1])
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
		}
		tr, err := telemetry.TracingFromEnv(context.Background(), "loom")
		if err != nil || tr.Exporting {
			t.Errorf("%s=%s: exporting %v, %v", env[0], env[1], tr.Exporting, err)
		}
	}
}

func TestUnsupportedSettingsAreRefused(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
	if _, err := telemetry.TracingFromEnv(context.Background(), "loom"); err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_PROTOCOL") {
		t.Errorf("http/json: %v", err)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "zipkin")
	if _, err := telemetry.TracingFromEnv(context.Background(), "loom"); err == nil || !strings.Contains(err.Error(), "OTEL_TRACES_EXPORTER") {
		t.Errorf("zipkin: %v", err)
	}
}

// An OTLP/HTTP collector receives the spans, named after OTEL_SERVICE_NAME.
func TestSpansReachTheCollectorTheVariablesName(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, r.URL.Path+" "+string(b))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_SERVICE_NAME", "loom-eu-1")

	ctx := context.Background()
	tr, err := telemetry.TracingFromEnv(ctx, "loom")
	if err != nil || !tr.Exporting {
		t.Fatalf("exporting %v, %v", tr.Exporting, err)
	}
	_, span := tr.Provider.Tracer("test").Start(ctx, "loom.v1.RunService/StartRun")
	span.End()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 1 || !strings.HasPrefix(bodies[0], "/v1/traces ") ||
		!strings.Contains(bodies[0], "loom.v1.RunService/StartRun") || !strings.Contains(bodies[0], "loom-eu-1") {
		t.Fatalf("the collector received %q", bodies)
	}
}
