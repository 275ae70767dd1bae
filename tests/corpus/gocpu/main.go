// Writes a Go CPU profile with runtime/pprof: the reference "foreign" pprof file that
// `pmprof report` must read (tests/corpus/go_cpu.pb.gz). Regenerate offline with:
//   cd tests/corpus/gocpu && GO111MODULE=off GOPATH=/usr/share/gocode HOME=$(mktemp -d) \
//     GOCACHE=$(mktemp -d) go run . ../go_cpu.pb.gz
package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"time"
)

var sink uint64

//go:noinline
func hotLoop(n int) uint64 {
	var x uint64 = 1
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

//go:noinline
func warmLoop(n int) uint64 {
	return hotLoop(n / 3)
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gocpu OUT.pb.gz")
		os.Exit(64)
	}
	f, err := os.Create(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		sink += hotLoop(2000000)
		sink += warmLoop(2000000)
	}
	pprof.StopCPUProfile()
	f.Close()
}
