package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/ephemera-dev/ephemera/internal/exec"
)

// ephemeraDriver drives the ephemera CLI (bin/ephemera) with a state dir of
// this run.
type ephemeraDriver struct {
	bin      string
	stateDir string
	// version is the Kubernetes version flag; empty for the default.
	version string
	// nodesNoWait makes creates with nodes return when the API answers
	// (--wait 0) instead of when the nodes are Ready.
	nodesNoWait bool
}

var _ driver = (*ephemeraDriver)(nil)

func (e *ephemeraDriver) Name() string { return "ephemera" }

func (e *ephemeraDriver) createArgs(name string, nodes int) []string {
	args := []string{"--state-dir", e.stateDir, "create", "cluster", name, "--real-nodes", "0"}
	if nodes > 0 {
		args = append(args, "--simulated-nodes", strconv.Itoa(nodes))
	}
	if nodes == 0 || e.nodesNoWait {
		args = append(args, "--wait", "0")
	}
	if e.version != "" {
		args = append(args, "--kubernetes-version", e.version)
	}
	return args
}

func (e *ephemeraDriver) Create(ctx context.Context, name string, nodes int) (*cluster, error) {
	c := &cluster{name: name, dir: filepath.Join(e.stateDir, "clusters", name)}
	if err := exec.Command(ctx, e.bin, e.createArgs(name, nodes)...).Run(); err != nil {
		return c, err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(c.dir, "kubeconfig"))
	if err != nil {
		return c, fmt.Errorf("kubeconfig of %s: %w", name, err)
	}
	c.config = cfg
	return c, nil
}

func (e *ephemeraDriver) Delete(ctx context.Context, c *cluster) error {
	return exec.Command(ctx, e.bin, "--state-dir", e.stateDir, "delete", "cluster", c.name).Run()
}

// deleteAll deletes every cluster of the state dir: cleanup.
func (e *ephemeraDriver) deleteAll(ctx context.Context) error {
	return exec.Command(ctx, e.bin, "--state-dir", e.stateDir, "delete", "cluster", "--all").Run()
}

func (e *ephemeraDriver) Commands() commands {
	version := ""
	if e.version != "" {
		version = " --kubernetes-version " + e.version
	}
	return commands{
		create:      "`ephemera create cluster NAME --real-nodes 0 --wait 0" + version + "`",
		createNodes: "`ephemera create cluster NAME --real-nodes 0 --simulated-nodes 3" + version + "` (waits for the nodes Ready and the default ServiceAccount; in the `--wait 0` row it returns when the API answers)",
		delete:      "`ephemera delete cluster NAME`",
	}
}
