package clusterenv

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/loomhq/loom/internal/freeport"
)

// Replica is one `loom serve` process. It keeps its ports across restarts.
type Replica struct {
	Index int
	// URL is the API; AdminURL serves /healthz, /readyz and /metrics.
	URL, AdminURL string
	addr, admin   string
	env           *Env
	proc          *Process
}

func (e *Env) newReplica(i int) (*Replica, error) {
	api, err1 := freeport.Pick()
	admin, err2 := freeport.Pick()
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("ports of replica %d: %v %v", i, err1, err2)
	}
	r := &Replica{Index: i, env: e,
		addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(api)), admin: net.JoinHostPort("127.0.0.1", strconv.Itoa(admin))}
	r.URL, r.AdminURL = "http://"+r.addr, "http://"+r.admin
	return r, nil
}

// Name is how logs and messages call the replica: loom-0, loom-1, …
func (r *Replica) Name() string { return "loom-" + strconv.Itoa(r.Index) }

// Args are the replica's command line after `loom`: what docs/production.md
// shows for several replicas.
func (r *Replica) Args() []string {
	e := r.env
	return []string{"serve",
		"-addr", r.addr,
		"-admin-addr", r.admin,
		"-redis-addr", strings.Join(e.RedisAddrs(), ","),
		"-temporal-addr", e.TemporalAddr,
		"-temporal-namespace", e.Namespace,
		"-task-queue", TaskQueue,
		"-tokens-file", e.tokensFile(),
		"-keys-file", e.keysFile(),
		// The example Migrator listens on loopback, which Loom refuses to
		// call unless allowed.
		"-allow-migrator-nets", "127.0.0.0/8",
		"-console=false",
	}
}

// Start starts the replica and waits until /readyz says Redis and Temporal
// answer it.
func (r *Replica) Start(ctx context.Context) error {
	var err error
	r.proc, err = startProcess(r.Name(), filepath.Join(r.env.Dir, r.Name()+".log"), nil, nil, filepath.Join(r.env.Bin, "loom"), r.Args()...)
	if err != nil {
		return err
	}
	return r.proc.await(ctx, 2*time.Minute, func() bool { return httpOK(r.AdminURL + "/readyz") })
}

// Kill SIGKILLs the replica: no drain, no goodbye.
func (r *Replica) Kill() {
	if r.proc != nil {
		r.proc.Kill()
	}
}

// Stop stops the replica as an orchestrator does: SIGTERM, then SIGKILL
// after its shutdown timeout.
func (r *Replica) Stop() {
	if r.proc != nil {
		r.proc.Stop(20 * time.Second)
	}
}

// Process is the replica's current process.
func (r *Replica) Process() *Process { return r.proc }
