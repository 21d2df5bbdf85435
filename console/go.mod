// This stub module keeps the Go tools (go list ./..., go test ./...,
// go mod tidy) out of console/node_modules, where some npm packages ship .go
// files. The console is TypeScript; see package.json.
module github.com/loomhq/loom/console

go 1.26
