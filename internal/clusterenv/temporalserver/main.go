// Command temporalserver is the Temporal server of the cluster test
// environment (package clusterenv): a Temporal server as a process of its
// own, persisted in PostgreSQL, as production runs one. It is not part of
// `loom` (which carries no Temporal server) nor of `loom-dev` (which embeds
// one on SQLite).
//
// At start it creates its two databases (temporal and temporal_visibility)
// and brings their schemas to this server version's with Temporal's own SQL
// schema tool (go.temporal.io/server/tools/sql, the temporal-sql-tool's
// packages, so the schema is the one this go.mod's server expects); then it
// starts the four services on loopback, registers the namespace through the
// frontend, as an operator would, and writes -ready-file.
//
//	temporalserver -pg 127.0.0.1:5433 -port 7233 -namespace default -ready-file ready
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	sdkclient "go.temporal.io/sdk/client"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	tlog "go.temporal.io/server/common/log"
	"go.temporal.io/server/common/membership/static"
	"go.temporal.io/server/common/persistence/sql/sqlplugin/postgresql"
	"go.temporal.io/server/common/primitives"
	"go.temporal.io/server/temporal"
	"go.temporal.io/server/tools/common/schema"
	sqltool "go.temporal.io/server/tools/sql"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/loomhq/loom/internal/freeport"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "temporalserver:", err)
		os.Exit(1)
	}
}

func run() error {
	pg := flag.String("pg", "127.0.0.1:5432", "PostgreSQL address")
	user := flag.String("pg-user", "postgres", "PostgreSQL user (it creates the databases)")
	password := flag.String("pg-password", "", "PostgreSQL password")
	port := flag.Int("port", 7233, "frontend gRPC port; the other services take free ports")
	namespace := flag.String("namespace", "default", "namespace registered at start")
	shards := flag.Int("shards", 4, "history shards (fixed once the database exists)")
	logFile := flag.String("log", "", "the server's log file (default stderr)")
	level := flag.String("log-level", "warn", "the server's log level")
	ready := flag.String("ready-file", "", "written once the namespace answers")
	flag.Parse()

	logCfg := tlog.Config{Level: *level, Format: "console", OutputFile: *logFile}
	logger := tlog.NewZapLogger(tlog.BuildZapLogger(logCfg))
	sqlCfg := func(db string) *config.SQL {
		return &config.SQL{
			PluginName:      postgresql.PluginName,
			DatabaseName:    db,
			ConnectAddr:     *pg,
			ConnectProtocol: "tcp",
			User:            *user,
			Password:        *password,
			MaxConns:        20,
			MaxIdleConns:    20,
			MaxConnLifetime: time.Hour,
		}
	}
	for db, schemaName := range map[string]string{"temporal": "postgresql/v12/temporal", "temporal_visibility": "postgresql/v12/visibility"} {
		if err := setupSchema(sqlCfg(db), schemaName, logger); err != nil {
			return fmt.Errorf("schema of %s: %w", db, err)
		}
	}

	// A port taken makes the server log a fatal line and exit: check first.
	hostPort := net.JoinHostPort("127.0.0.1", strconv.Itoa(*port))
	if l, err := net.Listen("tcp", hostPort); err != nil {
		return fmt.Errorf("frontend port: %w", err)
	} else {
		l.Close()
	}
	const clusterName = "active"
	cfg := &config.Config{
		Global: config.Global{Membership: config.Membership{MaxJoinDuration: 30 * time.Second, BroadcastAddress: "127.0.0.1"}},
		Persistence: config.Persistence{
			DefaultStore:     "default",
			VisibilityStore:  "visibility",
			NumHistoryShards: int32(*shards),
			DataStores: map[string]config.DataStore{
				"default":    {SQL: sqlCfg("temporal")},
				"visibility": {SQL: sqlCfg("temporal_visibility")},
			},
		},
		ClusterMetadata: &cluster.Config{
			FailoverVersionIncrement: 10,
			MasterClusterName:        clusterName,
			CurrentClusterName:       clusterName,
			ClusterInformation:       map[string]cluster.ClusterInformation{clusterName: {Enabled: true, InitialFailoverVersion: 1, RPCAddress: hostPort}},
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
	for _, svc := range []string{"frontend", "history", "matching", "worker"} {
		p := *port
		if svc != "frontend" {
			var err error
			if p, err = freeport.Pick(); err != nil {
				return err
			}
		}
		cfg.Services[svc] = config.Service{RPC: config.RPC{GRPCPort: p, BindOnIP: "127.0.0.1"}}
		hosts[primitives.ServiceName(svc)] = static.SingleLocalHost(net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	}
	srv, err := temporal.NewServer(
		temporal.WithConfig(cfg),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(hosts),
		temporal.WithLogger(logger),
		temporal.WithDynamicConfigClient(dynamicconfig.StaticClient{
			// As loom-dev: a step boundary waits for the history shards'
			// queues, polled at 20/s by default.
			dynamicconfig.TransferProcessorMaxPollRPS.Key():                  1000,
			dynamicconfig.TimerProcessorMaxPollRPS.Key():                     1000,
			dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 100,
		}),
	)
	if err != nil {
		return fmt.Errorf("build the server: %w", err)
	}
	if err := srv.Start(); err != nil {
		return fmt.Errorf("start the server: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := registerNamespace(ctx, hostPort, *namespace); err != nil {
		_ = srv.Stop()
		return err
	}
	if *ready != "" {
		if err := os.WriteFile(*ready, []byte(hostPort+"\n"), 0o644); err != nil {
			_ = srv.Stop()
			return err
		}
	}
	<-ctx.Done()
	return srv.Stop()
}

// setupSchema does what `temporal-sql-tool create-database`, `setup-schema
// -v 0.0` and `update-schema --schema-name ...` do, idempotently: a
// database already at this version is left as it is.
func setupSchema(cfg *config.SQL, schemaName string, logger tlog.Logger) error {
	db := *cfg
	if err := sqltool.DoCreateDatabase(&db, "postgres", logger); err != nil && !strings.Contains(err.Error(), "already exists") {
		return fmt.Errorf("create database: %w", err)
	}
	conn, err := sqltool.NewConnection(cfg, logger)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ReadSchemaVersion(); err != nil {
		// No version table yet: a new database.
		if err := schema.NewSetupSchemaTask(conn, &schema.SetupConfig{InitialVersion: "0.0"}, logger).Run(); err != nil {
			return fmt.Errorf("setup-schema: %w", err)
		}
	}
	if err := schema.NewUpdateSchemaTask(conn, &schema.UpdateConfig{DBName: cfg.DatabaseName, SchemaName: schemaName}, logger).Run(); err != nil {
		return fmt.Errorf("update-schema: %w", err)
	}
	return nil
}

// registerNamespace registers the namespace through the frontend (an
// existing one is kept) and waits until it answers.
func registerNamespace(ctx context.Context, hostPort, name string) error {
	c, err := sdkclient.NewNamespaceClient(sdkclient.Options{HostPort: hostPort, Logger: nopLogger{}})
	if err != nil {
		return fmt.Errorf("dial the frontend: %w", err)
	}
	defer c.Close()
	deadline := time.Now().Add(time.Minute)
	for {
		err := c.Register(ctx, &workflowservice.RegisterNamespaceRequest{Namespace: name, WorkflowExecutionRetentionPeriod: durationpb.New(72 * time.Hour)})
		var exists *serviceerror.NamespaceAlreadyExists
		if err == nil || errors.As(err, &exists) {
			if _, err = c.Describe(ctx, name); err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("register namespace %s: %w", name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type nopLogger struct{}

func (nopLogger) Debug(string, ...any) {}
func (nopLogger) Info(string, ...any)  {}
func (nopLogger) Warn(string, ...any)  {}
func (nopLogger) Error(string, ...any) {}
