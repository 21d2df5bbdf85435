// Package migration is Loom's vocabulary and its use cases: Migrations,
// Candidates, Runs and Steps as defined in the domain model, the rules that
// govern them, and the ports (MigrationStore, ExecutionEngine,
// MigratorNotifier) through which the use cases reach the outside world.
//
// It does no I/O of its own and imports neither connect, Temporal nor Redis:
// adapters implement the ports, and the api package maps this package's
// errors to Connect codes.
package migration
