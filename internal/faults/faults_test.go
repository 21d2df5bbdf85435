package faults

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if Child() {
		return
	}
	os.Exit(m.Run())
}

// The scenarios of Loom's reliability, on real components: each must lose
// no Run, complete no step twice, lose or double no history event, and
// leave every view agreeing with Temporal.
func check(t *testing.T, rep Report, err error) {
	t.Helper()
	var out bytes.Buffer
	rep.Print(&out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Completed != rep.Runs {
		t.Fatalf("%s cost something", rep.Scenario)
	}
}

func TestARedisOutageOf30sLosesNothing(t *testing.T) {
	rep, err := RedisOutage(context.Background(), RedisOutageConfig{Runs: 50, Steps: 3, Outage: 30 * time.Second})
	check(t, rep, err)
}

func TestARedisOutageOf3MinutesLosesNothing(t *testing.T) {
	rep, err := RedisOutage(context.Background(), RedisOutageConfig{Runs: 50, Steps: 3, Outage: 3 * time.Minute})
	check(t, rep, err)
}

func TestAMigratorSIGKILLedWithStepsAcceptedGetsThemBack(t *testing.T) {
	rep, err := MigratorKilled(context.Background(), MigratorKilledConfig{Runs: 10})
	check(t, rep, err)
}

func TestLoomDevSIGKILLedFiveTimesMidRunLosesNothing(t *testing.T) {
	rep, err := LoomDevKilled(context.Background(), LoomDevKilledConfig{Runs: 50, Steps: 3, Kills: 5})
	check(t, rep, err)
}
