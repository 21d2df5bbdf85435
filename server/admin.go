package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/loomhq/loom/server/internal/migration"
	"github.com/loomhq/loom/server/internal/store"
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

// observeReplicaWait says when Loom's writes were not acknowledged by as
// many Redis replicas as asked (see RedisConfig.WaitReplicas): it
// publishes loom_redis_replica_shortfalls_total and logs a warning, at most
// one every 10 s per Redis master, since a master without its replica
// comes short on every write until the replica is back.
func (s *Server) observeReplicaWait(meter metric.Meter) error {
	n := s.store.WaitsForReplicas()
	if n == 0 {
		s.log.Info("Loom's writes wait for no Redis replica", "redis_wait_replicas", 0)
		return nil
	}
	s.log.Info("each of Loom's writes waits for Redis replicas", "redis_wait_replicas", n, "timeout", s.cfg.Redis.WaitTimeout)
	shortfalls, err := meter.Int64ObservableCounter("loom.redis.replica.shortfalls", metric.WithUnit("{write}"),
		metric.WithDescription("Writes fewer Redis replicas acknowledged than -redis-wait-replicas within -redis-wait-timeout: kept, but a crash of their master before its replica caught up loses them."))
	if err != nil {
		return err
	}
	if _, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(shortfalls, s.store.ReplicaShortfalls())
		return nil
	}, shortfalls); err != nil {
		return err
	}
	var mu sync.Mutex
	warned := map[string]time.Time{}
	s.store.OnReplicaShortfall(func(sf store.ReplicaShortfall) {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(warned[sf.Addr]) < 10*time.Second {
			return
		}
		warned[sf.Addr] = time.Now()
		attrs := []any{"redis_master", sf.Addr, "acknowledged", sf.Acked, "wanted", sf.Want, "writes_so_far", s.store.ReplicaShortfalls()}
		if sf.Err != nil {
			attrs = append(attrs, "error", sf.Err)
		}
		if sf.NoReplica {
			s.log.Warn("Loom's writes to this Redis master go without waiting for replicas: it has fewer connected than -redis-wait-replicas; they stand, but a crash of this master would lose them until a replica is back and caught up", attrs...)
			return
		}
		s.log.Warn("a write of Loom's was not acknowledged by enough Redis replicas in time: it stands, but a crash of this master before its replica catches up would lose it (replica down or slow?)", attrs...)
	})
	return nil
}
