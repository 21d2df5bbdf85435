package migratorsdk

import (
	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// telemetry traces and measures the Migrator's calls, both ways, with
// OpenTelemetry's global providers: nothing is recorded until the program
// installs some (otel.SetTracerProvider, otel.SetMeterProvider). Trace
// context travels as W3C traceparent either way, so a step's trace goes from
// Loom through the Migrator and back to Loom with its reports.
func telemetry() connect.Interceptor {
	// Loom is the only caller the Migrator serves (its calls are signed):
	// its trace context is trusted.
	i, err := otelconnect.NewInterceptor(otelconnect.WithTrustRemote(),
		otelconnect.WithPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})))
	if err != nil {
		// Only a failure to create the duration histogram gets here, which
		// the global meter never returns.
		panic(err)
	}
	return i
}

func tracer() trace.Tracer { return otel.Tracer("github.com/loomhq/loom/migratorsdk") }
