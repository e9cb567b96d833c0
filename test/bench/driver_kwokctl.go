package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/ephemera-dev/ephemera/internal/exec"
)

// kwokctlDriver drives kwokctl's binary runtime with ephemera's Kubernetes,
// etcd and kwok binaries, in a work dir of this run (KWOK_WORKDIR).
type kwokctlDriver struct {
	bin     string
	workDir string
	kube    kubeBinaries
}

var _ driver = (*kwokctlDriver)(nil)

func (k *kwokctlDriver) Name() string { return "kwokctl" }

// env is kwokctl's environment: its own work dir, and a proxy that refuses
// every connection, so that any attempt to download a binary fails loudly
// instead of measuring a download.
func (k *kwokctlDriver) env() []string {
	return append(os.Environ(),
		"KWOK_WORKDIR="+k.workDir,
		"HTTP_PROXY=http://127.0.0.1:9", "HTTPS_PROXY=http://127.0.0.1:9",
		"http_proxy=http://127.0.0.1:9", "https_proxy=http://127.0.0.1:9",
		"NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost")
}

func (k *kwokctlDriver) kubeconfig(name string) string {
	return filepath.Join(k.workDir, name+".kubeconfig")
}

func (k *kwokctlDriver) binaryFlags() []string {
	return []string{
		"--runtime", "binary",
		"--kube-apiserver-binary", k.kube.apiserver,
		"--kube-controller-manager-binary", k.kube.controllerManager,
		"--kube-scheduler-binary", k.kube.scheduler,
		"--etcd-binary", k.kube.etcd,
		"--kwok-controller-binary", k.kube.kwok,
	}
}

func (k *kwokctlDriver) run(ctx context.Context, args ...string) error {
	cmd := exec.Command(ctx, k.bin, args...)
	cmd.Env = k.env()
	return cmd.Run()
}

func (k *kwokctlDriver) Create(ctx context.Context, name string, nodes int) (*cluster, error) {
	c := &cluster{name: name, dir: filepath.Join(k.workDir, "clusters", name)}
	args := append([]string{"--name", name, "create", "cluster", "--kubeconfig", k.kubeconfig(name)}, k.binaryFlags()...)
	if err := k.run(ctx, args...); err != nil {
		return c, err
	}
	if nodes > 0 {
		if err := k.run(ctx, "--name", name, "scale", "node", "--replicas", strconv.Itoa(nodes)); err != nil {
			return c, err
		}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", k.kubeconfig(name))
	if err != nil {
		return c, fmt.Errorf("kubeconfig of %s: %w", name, err)
	}
	c.config = cfg
	return c, nil
}

func (k *kwokctlDriver) Delete(ctx context.Context, c *cluster) error {
	err := k.run(ctx, "--name", c.name, "delete", "cluster", "--kubeconfig", k.kubeconfig(c.name))
	_ = os.Remove(k.kubeconfig(c.name))
	return err
}

func (k *kwokctlDriver) Commands() commands {
	create := "`kwokctl --name NAME create cluster --kubeconfig FILE --runtime binary --kube-apiserver-binary … --kube-controller-manager-binary … --kube-scheduler-binary … --etcd-binary … --kwok-controller-binary …` (ephemera's binaries; KWOK_WORKDIR of this run)"
	return commands{
		create:      create,
		createNodes: "the same create, then `kwokctl --name NAME scale node --replicas 3`",
		delete:      "`kwokctl --name NAME delete cluster`",
	}
}

// deleteAll deletes every kwokctl cluster of the work dir: cleanup.
func (k *kwokctlDriver) deleteAll(ctx context.Context) {
	cmd := exec.Command(ctx, k.bin, "get", "clusters")
	cmd.Env = k.env()
	out, err := cmd.Output()
	if err != nil {
		return
	}
	for _, name := range strings.Fields(string(out)) {
		_ = k.run(ctx, "--name", name, "delete", "cluster", "--kubeconfig", k.kubeconfig(name))
	}
}
