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

// Role is what the node says it is: "master" or "slave", and for a replica
// the port of its master; "" when it does not answer.
func (n *RedisNode) Role(ctx context.Context) (role string, masterPort int) {
	c := n.client()
	defer c.Close()
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return "", 0
	}
	for _, line := range strings.Split(info, "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		switch k {
		case "role":
			role = v
		case "master_port":
			masterPort, _ = strconv.Atoi(v)
		}
	}
	return role, masterPort
}

// MasterOf is the node that serves key's slot now, and a replica of it.
func (e *Env) MasterOf(ctx context.Context, key string) (master, replica *RedisNode, err error) {
	var slot int64 = -1
	for _, n := range e.Redis {
		c := n.client()
		slot, err = c.ClusterKeySlot(ctx, key).Result()
		var slots []redis.ClusterSlot
		if err == nil {
			slots, err = c.ClusterSlots(ctx).Result()
		}
		c.Close()
		if err != nil {
			continue
		}
		for _, s := range slots {
			if int64(s.Start) <= slot && slot <= int64(s.End) && len(s.Nodes) > 0 {
				master = e.node(s.Nodes[0].Addr)
				for _, r := range s.Nodes[1:] {
					if replica == nil {
						replica = e.node(r.Addr)
					}
				}
			}
		}
		if master != nil && replica != nil {
			return master, replica, nil
		}
	}
	return nil, nil, fmt.Errorf("no node says it serves slot %d of %s with a replica: %v", slot, key, err)
}

func (e *Env) node(addr string) *RedisNode {
	for _, n := range e.Redis {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// Failover is an operator's CLUSTER FAILOVER on this replica: it becomes
// its master's master once the two have agreed (no write lost), and the
// call returns once it says it is a master.
func (n *RedisNode) Failover(ctx context.Context) error {
	c := n.client()
	defer c.Close()
	if err := c.ClusterFailover(ctx).Err(); err != nil {
		return fmt.Errorf("CLUSTER FAILOVER on %s: %w", n.Addr, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if role, _ := n.Role(ctx); role == "master" {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s is not a master 30s after CLUSTER FAILOVER", n.Addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// AwaitMaster waits until n says it is a master and sees the cluster ok:
// after its master was killed, its promotion.
func (e *Env) AwaitMaster(ctx context.Context, n *RedisNode, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		if role, _ := n.Role(ctx); role == "master" {
			c := n.client()
			info, err := c.ClusterInfo(ctx).Result()
			c.Close()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s is not a master of an ok cluster after %v", n.Addr, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
