// Command etcd builds etcd from the Go module proxy so that envtest can run on
// machines without a download site.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
