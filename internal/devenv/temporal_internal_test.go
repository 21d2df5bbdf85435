package devenv

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// TestTemporalsFatalLinesReachStderr runs the fatal path in a child process:
// Temporal's Fatal ends the process, and what it said must be on stderr, not
// only in a temporal.log that a test's directory loses.
func TestTemporalsFatalLinesReachStderr(t *testing.T) {
	if os.Getenv("LOOM_DEVENV_FATAL_CHILD") == "1" {
		fatalToStderr(zap.NewNop()).Fatal("Failed to start gRPC listener", zap.String("address", "127.0.0.1:1"))
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestTemporalsFatalLinesReachStderr$")
	cmd.Env = append(os.Environ(), "LOOM_DEVENV_FATAL_CHILD=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("the child should exit 1 as Temporal's Fatal does; got %v", err)
	}
	if got := stderr.String(); !strings.Contains(got, "Failed to start gRPC listener") || !strings.Contains(got, "127.0.0.1:1") {
		t.Fatalf("stderr lacks the fatal line: %q", got)
	}
}
