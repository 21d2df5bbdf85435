package clusterenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loomhq/loom/internal/freeport"
)

// RedisNode is one redis-server of the Redis Cluster. It keeps its ports
// and its directory (nodes.conf, the append-only file) across restarts.
type RedisNode struct {
	Addr      string
	port, bus int
	dir       string
	proc      *Process
}

// redisNodes is the size of the Redis Cluster: 3 masters, each with a
// replica.
const redisNodes = 6

func (e *Env) startRedisCluster(ctx context.Context) error {
	for i := range redisNodes {
		port, err1 := freeport.Pick()
		// The cluster bus defaults to port+10000, which may be above 65535
		// or taken: give it a port of its own.
		bus, err2 := freeport.Pick()
		if err1 != nil || err2 != nil {
			return fmt.Errorf("redis ports: %v %v", err1, err2)
		}
		n := &RedisNode{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), port: port, bus: bus, dir: filepath.Join(e.Dir, "redis-"+strconv.Itoa(i))}
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			return err
		}
		e.Redis = append(e.Redis, n)
	}
	errs := make([]error, len(e.Redis))
	var wg sync.WaitGroup
	for i, n := range e.Redis {
		wg.Go(func() { errs[i] = n.Start(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	args := []string{"--cluster", "create"}
	args = append(args, e.RedisAddrs()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out)
	}
	// Every node must see the whole cluster (its slots covered) and every
	// replica its master's link up before clients rely on it.
	deadline := time.Now().Add(time.Minute)
	for {
		err := e.redisClusterOK(ctx)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the Redis Cluster did not settle: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// redisClusterOK reports the first node that does not see an ok cluster of
// 6 nodes, 3 of them masters with a replica linked to each.
func (e *Env) redisClusterOK(ctx context.Context) error {
	replicas := 0
	for _, n := range e.Redis {
		c := n.client()
		info, err := c.ClusterInfo(ctx).Result()
		if err == nil && (!strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:6")) {
			err = fmt.Errorf("cluster info: %s", strings.Join(strings.Fields(info)[:4], " "))
		}
		var repl string
		if err == nil {
			repl, err = c.Info(ctx, "replication").Result()
		}
		c.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", n.Addr, err)
		}
		if strings.Contains(repl, "role:slave") {
			if !strings.Contains(repl, "master_link_status:up") {
				return fmt.Errorf("%s: its master's link is not up", n.Addr)
			}
			replicas++
		}
	}
	if replicas != redisNodes/2 {
		return fmt.Errorf("%d replicas, want %d", replicas, redisNodes/2)
	}
	return nil
}

// Start starts the node (again) on its ports and directory.
func (n *RedisNode) Start(ctx context.Context) error {
	var err error
	n.proc, err = startProcess("redis-server "+n.Addr, filepath.Join(n.dir, "redis.log"), nil, nil, "redis-server",
		"--bind", "127.0.0.1",
		"--port", strconv.Itoa(n.port),
		"--cluster-enabled", "yes",
		"--cluster-port", strconv.Itoa(n.bus),
		"--cluster-config-file", "nodes.conf",
		// A master unreachable for 2 s is failed over by its replica.
		"--cluster-node-timeout", "2000",
		"--dir", n.dir,
		// As docs/production.md asks of production Redis.
		"--appendonly", "yes",
		"--appendfsync", "everysec",
		"--save", "",
		"--hash-max-ziplist-value", "1024",
		"--stream-node-max-bytes", "512",
	)
	if err != nil {
		return err
	}
	return n.proc.await(ctx, 30*time.Second, func() bool {
		c := n.client()
		defer c.Close()
		return c.Ping(ctx).Err() == nil
	})
}

// Kill SIGKILLs the node.
func (n *RedisNode) Kill() {
	if n.proc != nil {
		n.proc.Kill()
	}
}

// Stop stops the node with SIGTERM (it flushes its append-only file).
func (n *RedisNode) Stop() {
	if n.proc != nil {
		n.proc.Stop(10 * time.Second)
	}
}

func (n *RedisNode) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: n.Addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second, MaxRetries: -1})
}
