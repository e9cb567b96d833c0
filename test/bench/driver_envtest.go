package main

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// envtestDriver runs controller-runtime's envtest in this process, as a test
// suite would, with ephemera's kube-apiserver and etcd. Its clusters have
// no controller-manager, scheduler or nodes.
type envtestDriver struct {
	// binDir holds kube-apiserver, etcd and kubectl (BinaryAssetsDirectory).
	binDir string
	// root holds one dir per cluster.
	root string
}

var _ driver = (*envtestDriver)(nil)

func (e *envtestDriver) Name() string { return "envtest" }

func (e *envtestDriver) Create(ctx context.Context, name string, nodes int) (*cluster, error) {
	if nodes > 0 {
		return nil, errNoNodes
	}
	c := &cluster{name: name, dir: filepath.Join(e.root, name)}
	// Dirs of our own, so that the processes name c.dir on their command
	// lines (--cert-dir, --data-dir).
	certDir, dataDir := filepath.Join(c.dir, "apiserver"), filepath.Join(c.dir, "etcd")
	for _, d := range []string{certDir, dataDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: e.binDir,
		ControlPlane: envtest.ControlPlane{
			APIServer: &envtest.APIServer{CertDir: certDir},
			Etcd:      &envtest.Etcd{DataDir: dataDir},
		},
		ControlPlaneStartTimeout: time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	c.stop = env.Stop
	cfg, err := env.Start()
	if err != nil {
		return c, err
	}
	c.config = cfg
	return c, nil
}

func (e *envtestDriver) Delete(_ context.Context, c *cluster) error {
	if c.stop == nil {
		return nil
	}
	err := c.stop()
	c.stop = nil
	if rmErr := os.RemoveAll(c.dir); err == nil {
		err = rmErr
	}
	return err
}

func (e *envtestDriver) Commands() commands {
	return commands{
		create:      "`(&envtest.Environment{BinaryAssetsDirectory: DIR}).Start()` in the harness process (controller-runtime " + moduleVersion("sigs.k8s.io/controller-runtime") + ")",
		createNodes: "n/a: envtest runs etcd and kube-apiserver only (no controllers, scheduler or nodes)",
		delete:      "`Environment.Stop()`",
	}
}
