package api

import (
	"context"
	"fmt"
	"slices"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
)

// healthChecker answers gRPC health checks for the server as a whole ("")
// and for each loom.v1 service: NOT_SERVING while a dependency does not
// answer, SERVING otherwise.
type healthChecker struct {
	ready func(context.Context) error
}

func (h *healthChecker) Check(ctx context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	if req.Service != "" && !slices.Contains(ServiceNames, req.Service) {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("unknown service %q", req.Service))
	}
	if h.ready != nil {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := h.ready(ctx); err != nil {
			return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
		}
	}
	return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
}
