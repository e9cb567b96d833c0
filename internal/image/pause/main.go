// Command pause is the infrastructure container of a pod: it holds the pod's
// namespaces open, sleeps until SIGINT or SIGTERM and then exits 0. As PID 1
// of a pod's shared PID namespace it also reaps the zombie children that
// other containers' orphans leave behind.
//
// It uses only the standard library so that it builds as a static binary
// (CGO_ENABLED=0) from this single file, without a module cache.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "-v" || os.Args[1] == "--version") {
		fmt.Println("pause (ephemera)")
		return
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	// Children may have ended before Notify took effect.
	reap()
	for sig := range sigs {
		if sig == syscall.SIGCHLD {
			reap()
			continue
		}
		os.Exit(0)
	}
}

// reap waits for every child that has ended, without blocking. Signals
// coalesce, so one SIGCHLD may stand for many children.
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
	}
}
