module github.com/loomhq/loom/migratorsdk

go 1.26.0

require (
	connectrpc.com/connect v1.21.1
	github.com/loomhq/loom/gen v0.0.0-00010101000000-000000000000
	google.golang.org/protobuf v1.36.12
)

require buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go v1.36.12-20260825204119-511051f7f437.2 // indirect

replace github.com/loomhq/loom/gen => ../gen
