package server_test

import (
	"context"
	"encoding/json"
	"os"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

func historyRequest(namespace, workflowID string) *workflowservice.GetWorkflowExecutionHistoryRequest {
	return &workflowservice.GetWorkflowExecutionHistoryRequest{
		Namespace:              namespace,
		Execution:              &commonpb.WorkflowExecution{WorkflowId: workflowID},
		HistoryEventFilterType: enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT,
		MaximumPageSize:        10000,
	}
}

func writeHistory(path string, res *workflowservice.GetWorkflowExecutionHistoryResponse) error {
	b, err := protojson.MarshalOptions{Indent: "  "}.Marshal(&historypb.History{Events: res.GetHistory().GetEvents()})
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func jsonMarshal(v any) ([]byte, error) { return json.MarshalIndent(v, "", "  ") }

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}
