// Package api serves Loom's Connect services (loom.v1) over the use cases of
// the migration package: one file per service, the conversions of package
// protoconv, and the single mapping of domain errors to Connect codes in
// errors.go. It also serves gRPC health and reflection, and applies CORS.
// Besides it, only the composition root (package server, to mount the
// handlers) and package dispatch (a client of MigratorService) import
// connect.
package api

import (
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"net/http"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	connectcors "connectrpc.com/cors"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"connectrpc.com/validate"
	"github.com/rs/cors"
	"go.opentelemetry.io/otel/metric"

	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
	"github.com/loomhq/loom/server/auth"
	"github.com/loomhq/loom/server/internal/migration"
)

// Options is what the API is built from.
type Options struct {
	Registry  *migration.Registry
	Discovery *migration.Discovery
	Runs      *migration.Runs
	// Rollouts serves RolloutService; nil serves none.
	Rollouts *migration.Rollouts
	History  *migration.History
	Metrics  *migration.Metrics
	Logger   *slog.Logger
	// Ready reports whether the server can serve (its dependencies answer);
	// gRPC health says NOT_SERVING while it returns an error.
	Ready func(context.Context) error
	// CORSOrigins are the browser origins allowed to call the API; "*"
	// allows any; empty allows none but the server's own.
	CORSOrigins []string
	// Authenticator, when set, requires a bearer token on every call and
	// applies auth.Rules; nil serves everyone (development only).
	Authenticator *auth.Authenticator
	// Sessions, when set (with Authenticator), signs browsers in with a
	// session cookie (SessionService) and authenticates their calls by it.
	Sessions *auth.Sessions
	// Callbacks signs and checks the callback tokens of dispatches; nil
	// when callers are not authenticated.
	Callbacks *auth.Callbacks
	// Signer's public keys are published by ListSigningKeys.
	Signer *auth.Signer
	// RateLimit is each caller's sustained calls per second (and Burst its
	// burst); 0 disables the limit.
	RateLimit float64
	Burst     int
	// MaxRequestBytes bounds a request message; 0 means 4 MiB.
	MaxRequestBytes int
	// ProtectHealth also requires a token for gRPC health and reflection
	// (open by default: probes and tools list services without one).
	ProtectHealth bool
	// Telemetry, when set, is the outermost interceptor of every loom.v1
	// call: it traces the call and measures it (otelconnect).
	Telemetry connect.Interceptor
	// Meter records the API's own figures (reports processed); nil records
	// nothing.
	Meter metric.Meter
	// Console, when set, serves every path the API does not (the browser
	// console at /).
	Console http.Handler
}

// ServiceNames are the fully-qualified names of the loom.v1 services.
var ServiceNames = []string{
	loomv1connect.RegistryServiceName,
	loomv1connect.DiscoveryServiceName,
	loomv1connect.RunServiceName,
	loomv1connect.EventServiceName,
	loomv1connect.HistoryServiceName,
	loomv1connect.MetricsServiceName,
	loomv1connect.RolloutServiceName,
	loomv1connect.SessionServiceName,
}

// compressMinBytes is the smallest answer compressed for a client that
// accepts gzip.
const compressMinBytes = 1024

// fastGzip is gzip at its fastest level, replacing connect's default level
// for the answers Loom compresses. At the default level, compressing was
// about a fifth of the server's CPU in ListCandidates (loom-bench -scale's
// profile); a page of 100 Candidates as the bench lists them, 10.9 KB of
// protobuf, compresses to 1,509 bytes in 147 µs at the default level and
// to 1,765 bytes in 51 µs at level 1: 256 bytes more for a third of the
// time, on a call answered in milliseconds.
var fastGzip = connect.WithCompression("gzip",
	func() connect.Decompressor { return &gzip.Reader{} },
	func() connect.Compressor {
		w, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed) // BestSpeed is a valid level
		return w
	})

// NewHandler builds the HTTP handler of the whole API. Every request is
// validated against the rules in the .proto files before a handler sees it,
// and every error leaves through toConnectError.
func NewHandler(o Options) http.Handler {
	// Outermost first: errors of every later stage are mapped and logged;
	// callers are authenticated before their requests are even validated.
	interceptors := []connect.Interceptor{timingInterceptor{}}
	if o.Telemetry != nil {
		interceptors = append(interceptors, o.Telemetry)
	}
	interceptors = append(interceptors, errorInterceptor{log: o.Logger})
	var openOpts []connect.HandlerOption
	if o.Authenticator != nil {
		authn := &authInterceptor{authn: o.Authenticator, sessions: o.Sessions, limit: newCallerLimits(o.RateLimit, o.Burst), registry: o.Registry}
		interceptors = append(interceptors, authn)
		if o.ProtectHealth {
			openOpts = append(openOpts, connect.WithInterceptors(healthAuth{authn}))
		}
	}
	interceptors = append(interceptors, actorInterceptor{}, validate.NewInterceptor(validate.WithValidator(requestValidator{protovalidate.GlobalValidator})))
	maxBytes := o.MaxRequestBytes
	if maxBytes <= 0 {
		maxBytes = 4 << 20
	}
	// Small answers (a report's, a Run's) go uncompressed: gzip would cost
	// more CPU than the bytes it saves (a compressor reset alone is ~0.1 ms).
	compressMin := connect.WithCompressMinBytes(compressMinBytes)
	openOpts = append(openOpts, compressMin, fastGzip)
	opts := append([]connect.HandlerOption{connect.WithInterceptors(interceptors...), connect.WithReadMaxBytes(maxBytes), compressMin, fastGzip},
		jsonCodecs()...)
	mux := http.NewServeMux()
	mux.Handle(loomv1connect.NewRegistryServiceHandler(&RegistryServer{Registry: o.Registry, Signer: o.Signer}, opts...))
	mux.Handle(loomv1connect.NewDiscoveryServiceHandler(&DiscoveryServer{Discovery: o.Discovery, Log: o.Logger}, opts...))
	mux.Handle(loomv1connect.NewRunServiceHandler(&RunServer{Runs: o.Runs, Callbacks: o.Callbacks, Log: o.Logger}, opts...))
	mux.Handle(loomv1connect.NewEventServiceHandler(newEventServer(o.Runs, o.Callbacks, o.Meter), opts...))
	mux.Handle(loomv1connect.NewHistoryServiceHandler(&HistoryServer{History: o.History}, opts...))
	mux.Handle(loomv1connect.NewMetricsServiceHandler(&MetricsServer{Metrics: o.Metrics}, opts...))
	sessions := o.Sessions
	if o.Authenticator == nil {
		sessions = nil
	}
	mux.Handle(loomv1connect.NewSessionServiceHandler(&SessionServer{Sessions: sessions, Log: o.Logger}, opts...))
	if o.Rollouts != nil {
		mux.Handle(loomv1connect.NewRolloutServiceHandler(&RolloutServer{Rollouts: o.Rollouts}, opts...))
	}

	reflector := grpcreflect.NewStaticReflector(append([]string{grpchealth.HealthV1ServiceName}, ServiceNames...)...)
	mux.Handle(grpcreflect.NewHandlerV1(reflector, openOpts...))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector, openOpts...))
	mux.Handle(grpchealth.NewHandler(&healthChecker{ready: o.Ready}, openOpts...))
	if o.Console != nil {
		mux.Handle("/", o.Console)
	}

	if len(o.CORSOrigins) == 0 {
		return withRequestInfo(mux)
	}
	return cors.New(cors.Options{
		AllowedOrigins: o.CORSOrigins,
		AllowedMethods: connectcors.AllowedMethods(),
		AllowedHeaders: append(connectcors.AllowedHeaders(), "Authorization"),
		ExposedHeaders: append(connectcors.ExposedHeaders(), serverTimingHeader),
		MaxAge:         7200,
	}).Handler(withRequestInfo(mux))
}
