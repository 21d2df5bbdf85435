package devenv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	tlog "go.temporal.io/server/common/log"
	"go.temporal.io/server/common/membership/static"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/loomhq/loom/internal/freeport"
)

// TemporalOptions configure the embedded Temporal server.
type TemporalOptions struct {
	// Dir holds temporal.db (and its log). "" keeps nothing: the database
	// lives in a temporary directory removed by Stop.
	Dir string
	// FrontendPort is the gRPC port clients dial; 0 picks a free one.
	FrontendPort int
	// Namespace is created before start; default "default".
	Namespace string
	Logger    *slog.Logger
}

// Temporal is a running embedded Temporal server.
type Temporal struct {
	srv       temporal.Server
	hostPort  string
	namespace string
	scratch   string // a temporary Dir to remove at Stop
}

// clusterName is the name of the one cluster; persisted in a file on its
// first start, so it must never change.
const clusterName = "active"

// StartTemporal starts a single-node Temporal server on loopback.
//
// A file-backed server keeps its state in Dir/temporal.db (SQLite, pure Go).
// SQLite files are never migrated between Temporal versions: the file
// belongs to the go.temporal.io/server version in go.mod.
func StartTemporal(ctx context.Context, o TemporalOptions) (*Temporal, error) {
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	frontend := o.FrontendPort
	if frontend == 0 {
		var err error
		if frontend, err = freeport.Pick(); err != nil {
			return nil, err
		}
	}
	// A port already taken makes the Temporal server exit the whole process
	// instead of returning an error: check first.
	if err := checkPortFree(frontend); err != nil {
		return nil, fmt.Errorf("temporal port %d: %w", frontend, err)
	}
	t := &Temporal{namespace: o.Namespace}
	if o.Dir == "" {
		// SQLite's in-memory databases vanish with their last connection,
		// which namespace creation before start would close: a scratch file
		// is the simpler way to keep nothing.
		dir, err := os.MkdirTemp("", "loom-dev-temporal-")
		if err != nil {
			return nil, err
		}
		o.Dir, t.scratch = dir, dir
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	sql := &config.SQL{
		PluginName:        sqliteplugin.PluginName,
		DatabaseName:      filepath.Join(o.Dir, "temporal.db"),
		ConnectAttributes: map[string]string{"mode": "rwc", "journal_mode": "wal", "synchronous": "normal"},
	}
	if err := setupFileSchema(sql); err != nil {
		t.removeScratch()
		return nil, err
	}
	logCfg := tlog.Config{Level: "warn", Format: "console", OutputFile: filepath.Join(o.Dir, "temporal.log")}
	ns, err := sqliteschema.NewNamespaceConfig(clusterName, o.Namespace, false, nil)
	if err != nil {
		t.removeScratch()
		return nil, err
	}
	// Keep closed Runs visible for a month rather than the 24 h default.
	ns.Detail.Config.Retention = durationpb.New(30 * 24 * time.Hour)
	if err := sqliteschema.CreateNamespaces(sql, ns); err != nil {
		t.removeScratch()
		return nil, fmt.Errorf("create temporal namespace %s: %w", o.Namespace, err)
	}

	ports := map[string]int{"frontend": frontend}
	for _, svc := range []string{"history", "matching", "worker"} {
		if ports[svc], err = freeport.Pick(); err != nil {
			return nil, err
		}
	}
	hostPort := net.JoinHostPort("127.0.0.1", strconv.Itoa(frontend))
	cfg := &config.Config{
		Global: config.Global{
			Membership: config.Membership{MaxJoinDuration: 30 * time.Second, BroadcastAddress: "127.0.0.1"},
		},
		Persistence: config.Persistence{
			DefaultStore:     "sqlite",
			VisibilityStore:  "sqlite",
			NumHistoryShards: 1,
			DataStores:       map[string]config.DataStore{"sqlite": {SQL: sql}},
		},
		ClusterMetadata: &cluster.Config{
			EnableGlobalNamespace:    false,
			FailoverVersionIncrement: 10,
			MasterClusterName:        clusterName,
			CurrentClusterName:       clusterName,
			ClusterInformation: map[string]cluster.ClusterInformation{
				clusterName: {Enabled: true, InitialFailoverVersion: 1, RPCAddress: hostPort},
			},
		},
		DCRedirectionPolicy: config.DCRedirectionPolicy{Policy: "noop"},
		Services:            map[string]config.Service{},
		Archival: config.Archival{
			History:    config.HistoryArchival{State: "disabled"},
			Visibility: config.VisibilityArchival{State: "disabled"},
		},
		NamespaceDefaults: config.NamespaceDefaults{Archival: config.ArchivalNamespaceDefaults{
			History:    config.HistoryArchivalNamespaceDefaults{State: "disabled"},
			Visibility: config.VisibilityArchivalNamespaceDefaults{State: "disabled"},
		}},
		PublicClient: config.PublicClient{HostPort: hostPort},
	}
	hosts := map[primitives.ServiceName]static.Hosts{}
	for svc, port := range ports {
		cfg.Services[svc] = config.Service{RPC: config.RPC{GRPCPort: port, BindOnIP: "127.0.0.1"}}
		hosts[primitives.ServiceName(svc)] = static.SingleLocalHost(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	}
	srv, err := temporal.NewServer(
		temporal.WithConfig(cfg),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(hosts),
		temporal.WithLogger(tlog.NewZapLogger(fatalToStderr(tlog.BuildZapLogger(logCfg)))),
		temporal.WithDynamicConfigClient(dynamicconfig.StaticClient{
			// Each step boundary waits for the history shard's queues: poll
			// them fast, so a Migrator's report reaches the next dispatch in
			// milliseconds rather than ~50 ms (one shard: cheap).
			dynamicconfig.TransferProcessorMaxPollRPS.Key(): 1000,
			dynamicconfig.TimerProcessorMaxPollRPS.Key():    1000,
			// A development server's history cache need not be large.
			dynamicconfig.HistoryCacheHostLevelMaxSize.Key(): 8192,
			// A console listing Runs should not hit the visibility limit.
			dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 100,
		}),
	)
	if err != nil {
		t.removeScratch()
		return nil, fmt.Errorf("build the temporal server: %w", err)
	}
	if err := srv.Start(); err != nil {
		t.removeScratch()
		return nil, fmt.Errorf("start the temporal server: %w", err)
	}
	t.srv, t.hostPort = srv, hostPort
	return t, nil
}

// HostPort is the frontend address.
func (t *Temporal) HostPort() string { return t.hostPort }

// Namespace is the namespace created for Loom.
func (t *Temporal) Namespace() string { return t.namespace }

// Persistent reports whether the server's state survives a restart.
func (t *Temporal) Persistent() bool { return t.scratch == "" }

// Stop stops the server (about a second: its frontend drains).
func (t *Temporal) Stop() error {
	err := t.srv.Stop()
	t.removeScratch()
	return err
}

// fatalToStderr also writes the server's Panic and Fatal lines to stderr.
// Temporal answers some failures (a port it cannot bind) with a fatal log
// and os.Exit(1): without this the only trace would be in temporal.log,
// which a scratch or test directory may not keep.
func fatalToStderr(z *zap.Logger) *zap.Logger {
	enc := zap.NewDevelopmentEncoderConfig()
	stderr := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.Lock(os.Stderr), zapcore.PanicLevel)
	return z.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return zapcore.NewTee(c, stderr) }))
}

func (t *Temporal) removeScratch() {
	if t.scratch != "" {
		_ = os.RemoveAll(t.scratch)
	}
}

// setupFileSchema creates the schema of a new database file on a temporary
// file renamed into place, so that a crash mid-setup never leaves a
// half-built file that a later start would trust.
func setupFileSchema(sql *config.SQL) error {
	if _, err := os.Stat(sql.DatabaseName); err == nil {
		return nil
	}
	tmp := *sql
	tmp.DatabaseName = sql.DatabaseName + ".init"
	tmp.ConnectAttributes = map[string]string{"mode": "rwc"}
	_ = os.Remove(tmp.DatabaseName)
	if err := sqliteschema.SetupSchema(&tmp); err != nil {
		return fmt.Errorf("create the temporal schema in %s: %w", tmp.DatabaseName, err)
	}
	if err := os.Rename(tmp.DatabaseName, sql.DatabaseName); err != nil {
		return fmt.Errorf("install %s: %w", sql.DatabaseName, err)
	}
	return nil
}

// checkPortFree reports a port another process listens on.
func checkPortFree(port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			return fmt.Errorf("already in use (%v)", op.Err)
		}
		return err
	}
	return l.Close()
}
