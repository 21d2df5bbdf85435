// Package telemetry sets up what Loom reports about itself: OpenTelemetry
// traces, exported over OTLP when the standard OTEL_* variables ask for it,
// and metrics, served to Prometheus from a registry of the server's own.
package telemetry

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Propagator carries trace context across calls: W3C traceparent and
// baggage, what the Migrator SDK and Temporal's interceptor speak too.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// Tracing is a TracerProvider and what stops it.
type Tracing struct {
	Provider trace.TracerProvider
	// Exporting says whether spans leave the process.
	Exporting bool
	// Shutdown flushes the spans not exported yet.
	Shutdown func(context.Context) error
}

// TracingFromEnv builds the tracer provider the environment asks for,
// following the OpenTelemetry SDK specification: spans are exported over
// OTLP when OTEL_TRACES_EXPORTER is "otlp" or an OTEL_EXPORTER_OTLP_*
// endpoint is set, with OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL "grpc" or
// "http/protobuf" (the default); OTEL_SDK_DISABLED=true or
// OTEL_TRACES_EXPORTER=none turn tracing off. Otherwise nothing is recorded
// or exported; trace context is still passed on. service names the
// resource unless OTEL_SERVICE_NAME does; OTEL_RESOURCE_ATTRIBUTES,
// OTEL_TRACES_SAMPLER and the exporter's own variables apply as specified.
func TracingFromEnv(ctx context.Context, service string) (Tracing, error) {
	off := Tracing{Provider: noop.NewTracerProvider(), Shutdown: func(context.Context) error { return nil }}
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return off, nil
	}
	switch exp := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")); exp {
	case "none":
		return off, nil
	case "":
		if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
			return off, nil
		}
	case "otlp":
	default:
		return off, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: Loom exports traces with otlp or none", exp)
	}
	protocol := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var client otlptrace.Client
	switch protocol {
	case "", "http/protobuf":
		client = otlptracehttp.NewClient()
	case "grpc":
		client = otlptracegrpc.NewClient()
	default:
		return off, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: use grpc or http/protobuf", protocol)
	}
	// The exporter connects lazily: an unreachable collector costs dropped
	// spans, never a failed start.
	exporter, err := otlptrace.New(ctx, client)
	if err != nil {
		return off, fmt.Errorf("otlp trace exporter: %w", err)
	}
	// Later options win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
	// over the default name.
	res, err := resource.New(ctx, resource.WithTelemetrySDK(), resource.WithProcessRuntimeName(),
		resource.WithAttributes(attribute.String("service.name", service)), resource.WithFromEnv())
	if err != nil {
		return off, fmt.Errorf("resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	return Tracing{Provider: tp, Exporting: true, Shutdown: tp.Shutdown}, nil
}

// Metrics is a MeterProvider whose figures a Prometheus handler serves,
// with the Go runtime's and the process's, from a registry of its own (so
// that two servers in one process, or an embedded Temporal, never clash).
type Metrics struct {
	Provider *sdkmetric.MeterProvider
	Registry *prometheus.Registry
}

// NewMetrics returns an empty set of metrics.
func NewMetrics() (*Metrics, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	return &Metrics{Provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter)), Registry: reg}, nil
}

// Meter is the meter of one instrumentation scope.
func (m *Metrics) Meter(scope string) metric.Meter { return m.Provider.Meter(scope) }

// Handler serves the metrics in Prometheus's text and OpenMetrics formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry, EnableOpenMetrics: true})
}
