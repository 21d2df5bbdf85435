package api_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
)

func TestReflectionListsTheServices(t *testing.T) {
	a := newTestAPI(t)
	stream := grpcreflect.NewClient(h2c(), a.url, connect.WithGRPC()).NewStream(context.Background())
	defer stream.Close()
	names, err := stream.ListServices()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		loomv1connect.RegistryServiceName, loomv1connect.DiscoveryServiceName,
		loomv1connect.RunServiceName, loomv1connect.EventServiceName, grpchealth.HealthV1ServiceName,
	} {
		if !slices.ContainsFunc(names, func(n protoreflect.FullName) bool { return string(n) == want }) {
			t.Errorf("reflection does not list %s: %v", want, names)
		}
	}
	// The descriptors resolve, imports (protovalidate, well-known types) included.
	files, err := stream.FileContainingSymbol(loomv1connect.RegistryServiceName)
	if err != nil || len(files) == 0 {
		t.Fatalf("file containing %s: %d files, %v", loomv1connect.RegistryServiceName, len(files), err)
	}
}

func TestHealthFollowsRedis(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	hc := grpchealth.NewClient(h2c(), a.url, connect.WithGRPC())
	check := func(service string) grpchealth.Status {
		t.Helper()
		res, err := hc.Check(ctx, &grpchealth.CheckRequest{Service: service})
		if err != nil {
			t.Fatalf("check %q: %v", service, err)
		}
		return res.Status
	}
	if s := check(""); s != grpchealth.StatusServing {
		t.Fatalf("with Redis up: %v", s)
	}
	if s := check(loomv1connect.RegistryServiceName); s != grpchealth.StatusServing {
		t.Fatalf("registry with Redis up: %v", s)
	}
	if _, err := hc.Check(ctx, &grpchealth.CheckRequest{Service: "no.such.Service"}); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("unknown service: %v", err)
	}

	a.redis.Stop()
	if s := check(""); s != grpchealth.StatusNotServing {
		t.Fatalf("with Redis down: %v", s)
	}
	a.redis.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for check("") != grpchealth.StatusServing {
		if time.Now().After(deadline) {
			t.Fatal("health did not recover after Redis came back")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
