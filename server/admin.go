package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/loomhq/loom/server/internal/migration"
)

// probeTimeout bounds one readiness check of Redis and Temporal.
const probeTimeout = 2 * time.Second

// adminHandler serves what operators' infrastructure reads, apart from the
// API and without authentication (bind AdminAddr to a private address):
//
//	/metrics  Prometheus metrics
//	/healthz  200 while the process serves at all: a liveness probe that
//	          never restarts a replica for an outage of Redis or Temporal
//	/readyz   200 while Redis and Temporal answer, 503 (with the reason)
//	          otherwise: a readiness probe, recovering by itself
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), probeTimeout)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := s.ready(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// ready reports whether Redis and Temporal both answer.
func (s *Server) ready(ctx context.Context) error {
	var errs []error
	if err := s.store.Ping(ctx); err != nil {
		errs = append(errs, fmt.Errorf("redis: %w", err))
	}
	if err := s.temporal.Ping(ctx); err != nil {
		errs = append(errs, fmt.Errorf("temporal: %w", err))
	}
	return errors.Join(errs...)
}

// observeRuns publishes loom_runs, the Runs of each Migration by status,
// read from Redis when Prometheus scrapes (O(Migrations) per scrape).
func (s *Server) observeRuns(meter metric.Meter) error {
	runs, err := meter.Int64ObservableGauge("loom.runs", metric.WithUnit("{run}"),
		metric.WithDescription("Runs of each Migration by status (running, completed, cancelled)."))
	if err != nil {
		return err
	}
	_, err = meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, probeTimeout)
		defer cancel()
		counts, err := s.store.RunCounts(ctx)
		if err != nil {
			// The scrape still serves every other series; readiness says why.
			return err
		}
		for m, byStatus := range counts {
			for _, st := range migration.RunStatuses {
				o.ObserveInt64(runs, byStatus[st], metric.WithAttributes(
					attribute.String("migration_id", m), attribute.String("status", string(st))))
			}
		}
		return nil
	}, runs)
	return err
}
