package server_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
)

// scrape reads the admin listener's /metrics as Prometheus would.
func scrape(t *testing.T, adminURL string) map[string]*dto.MetricFamily {
	t.Helper()
	res, err := http.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", res.Status)
	}
	var p expfmt.TextParser
	families, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return families
}

// sample sums the values of the samples of family name whose labels include
// want (a histogram's sample count, a counter's or a gauge's value), and
// says whether any matched.
func sample(families map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f, ok := families[name]
	if !ok {
		return 0, false
	}
	var sum float64
	var found bool
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		found = true
		switch {
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		}
	}
	return sum, found
}

func TestPrometheusScrapesRPCsDispatchesReportsRunsAndTemporal(t *testing.T) {
	w := newWorld(t)
	l := w.startLoom()
	l.setup(t, w.migrator.url, "acme/payments", "acme/ledger")
	if _, err := l.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{
		MigrationId: "go-upgrade", CandidateId: "acme/payments", Inputs: map[string]string{"target_version": "1.23"},
	})); err != nil {
		t.Fatal(err)
	}
	d := w.nextDispatch()
	l.mustReport(t, d, loomv1.StepStatus_STEP_STATUS_OPEN)
	if _, err := l.report(t, d, loomv1.StepStatus_STEP_STATUS_OPEN, func(r *loomv1.ReportStepStatusRequest) { r.Attempt = 7 }); err == nil {
		t.Fatal("a report of an attempt never dispatched was accepted")
	}

	fams := scrape(t, l.adminURL)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64 // exact; -1: at least one
	}{
		// RPCs by procedure and code, with latency histograms (otelconnect).
		{"rpc_server_call_duration_seconds", map[string]string{"rpc_method": "loom.v1.RunService/StartRun"}, 1},
		{"rpc_server_call_duration_seconds", map[string]string{"rpc_method": "loom.v1.EventService/ReportStepStatus"}, 2},
		{"rpc_server_call_duration_seconds", map[string]string{"rpc_method": "loom.v1.EventService/ReportStepStatus", "rpc_response_status_code": "FAILED_PRECONDITION"}, 1},
		// Calls to the Migrator, as a client.
		{"rpc_client_call_duration_seconds", map[string]string{"rpc_method": "loom.migrator.v1.MigratorService/ExecuteStep"}, 1},
		{"loom_dispatch_duration_seconds", map[string]string{"migration_id": "go-upgrade", "outcome": "accepted"}, 1},
		{"loom_events_processed_total", map[string]string{"migration_id": "go-upgrade", "status": "open", "result": "changed"}, 1},
		{"loom_events_processed_total", map[string]string{"migration_id": "go-upgrade", "result": "refused"}, 1},
		{"loom_runs", map[string]string{"migration_id": "go-upgrade", "status": "running"}, 1},
		{"loom_runs", map[string]string{"migration_id": "go-upgrade", "status": "completed"}, 0},
		// The Temporal SDK's own figures.
		{"temporal_workflow_task_execution_latency_seconds", nil, -1},
		// A dispatch's first try is a local activity (see engine.startDispatch).
		{"temporal_local_activity_execution_latency_seconds", map[string]string{"activity_type": "DispatchStep"}, -1},
		{"go_goroutines", nil, -1},
	} {
		got, ok := sample(fams, c.name, c.labels)
		switch {
		case !ok:
			t.Errorf("no %s%v in the scrape", c.name, c.labels)
		case c.want >= 0 && got != c.want:
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		case c.want < 0 && got <= 0:
			t.Errorf("%s%v = %v, want some", c.name, c.labels, got)
		}
	}
	if t.Failed() {
		var names []string
		for n := range fams {
			names = append(names, n)
		}
		t.Logf("families scraped: %s", strings.Join(names, " "))
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestProbesFollowRedisAndRecoverByThemselves(t *testing.T) {
	w := newWorld(t)
	l := w.startLoom()
	hc := grpchealth.NewClient(http.DefaultClient, l.url)
	grpcHealth := func() grpchealth.Status {
		t.Helper()
		res, err := hc.Check(ctx, &grpchealth.CheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return res.Status
	}
	expect := func(when string, ready int, health grpchealth.Status) {
		t.Helper()
		// Redis's client reconnects on its own: give it a few seconds.
		deadline := time.Now().Add(15 * time.Second)
		for {
			code, body := get(t, l.adminURL+"/readyz")
			hs := grpcHealth()
			if code == ready && hs == health {
				if ready != http.StatusOK && !strings.Contains(body, "redis") {
					t.Errorf("%s: /readyz says %q, not naming redis", when, body)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: /readyz %d %q and gRPC health %v, want %d and %v", when, code, body, hs, ready, health)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if code, _ := get(t, l.adminURL+"/healthz"); code != http.StatusOK {
			t.Fatalf("%s: /healthz %d: a liveness probe would restart the replica", when, code)
		}
	}
	expect("with Redis up", http.StatusOK, grpchealth.StatusServing)
	w.redis.Stop()
	expect("with Redis down", http.StatusServiceUnavailable, grpchealth.StatusNotServing)
	w.redis.Restart()
	expect("with Redis back", http.StatusOK, grpchealth.StatusServing)
}

// lines are the JSON log lines written so far.
func (b *syncBuffer) lines() []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

func TestEveryLogLineAboutARunNamesIt(t *testing.T) {
	w := newWorld(t)
	var sink syncBuffer
	w.log = slog.New(slog.NewJSONHandler(&sink, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l := w.startLoom()
	l.setup(t, w.migrator.url, "acme/payments")
	// The Migrator is down at first: the dispatch fails once and is retried.
	w.migrator.setDown(true)
	if _, err := l.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{
		MigrationId: "go-upgrade", CandidateId: "acme/payments", Inputs: map[string]string{"target_version": "1.23"},
	})); err != nil {
		t.Fatal(err)
	}
	// Back up once a dispatch has failed twice: its first try, in the
	// workflow task, and the activity that retries it (however slow the
	// machine).
	for began := time.Now(); countMessage(sink.lines(), "dispatch failed; retrying") < 2; time.Sleep(20 * time.Millisecond) {
		if time.Since(began) > 20*time.Second {
			t.Fatal("no dispatch failed while the Migrator was down")
		}
	}
	w.migrator.setDown(false)
	d := w.nextDispatch()
	l.mustReport(t, d, loomv1.StepStatus_STEP_STATUS_FAILED, func(r *loomv1.ReportStepStatusRequest) { r.Message = "go.mod is generated" })
	// A report on an attempt that does not exist is refused, and logged so.
	if _, err := l.report(t, d, loomv1.StepStatus_STEP_STATUS_OPEN, func(r *loomv1.ReportStepStatusRequest) { r.Attempt = 9 }); err == nil {
		t.Fatal("a report of attempt 9 was accepted")
	}
	if _, err := l.runs.RetryStep(ctx, connect.NewRequest(&loomv1.RetryStepRequest{RunId: d.RunId, StepName: "bump-go", Attempt: 1})); err != nil {
		t.Fatal(err)
	}
	w.nextDispatch()
	if _, err := l.runs.CancelRun(ctx, connect.NewRequest(&loomv1.CancelRunRequest{RunId: d.RunId, Reason: "wrong fleet"})); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !hasMessage(sink.lines(), "run cancelled") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}

	// Which lines are about a Run: Temporal's (they name the workflow) and
	// Loom's own, and which of those are about one step attempt.
	perStep := map[string]bool{"dispatching step": true, "step changed": true, "step failed": true,
		"dispatch failed; retrying": true, "rpc refused": true}
	seen := map[string]int{}
	for _, line := range sink.lines() {
		msg, _ := line["msg"].(string)
		_, temporal := line["WorkflowID"]
		_, run := line["run_id"]
		if !temporal && !run && !strings.HasPrefix(msg, "run ") && !perStep[msg] {
			continue
		}
		seen[msg]++
		want := []string{"migration_id", "candidate_id", "run_id"}
		if perStep[msg] {
			want = append(want, "step", "attempt")
		}
		for _, k := range want {
			if _, ok := line[k]; !ok {
				t.Errorf("%q has no %s: %v", msg, k, line)
			}
		}
		if line["run_id"] != nil && line["run_id"] != "go-upgrade__acme/payments" || line["migration_id"] != nil && line["migration_id"] != "go-upgrade" {
			t.Errorf("%q names another Run: %v", msg, line)
		}
	}
	t.Logf("lines about the Run: %v", seen)
	// Each kind of line showed up, so the checks above checked something.
	for _, msg := range []string{"run started", "dispatching step", "dispatch failed; retrying", "Activity error.", "step changed", "rpc refused", "run cancelled"} {
		if seen[msg] == 0 {
			t.Errorf("no %q line; lines about the Run: %v", msg, seen)
		}
	}
}

func countMessage(lines []map[string]any, msg string) int {
	n := 0
	for _, l := range lines {
		if l["msg"] == msg {
			n++
		}
	}
	return n
}

func hasMessage(lines []map[string]any, msg string) bool {
	for _, l := range lines {
		if l["msg"] == msg {
			return true
		}
	}
	return false
}
