package local

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ephemera-dev/ephemera/internal/kube"
)

// TestPlanFilesExist: every file of the cluster dir that a component's
// flags name is written by writePKI and writeKubeconfigs.
func TestPlanFilesExist(t *testing.T) {
	dir := t.TempDir()
	ca, err := writePKI(dir, defaultServiceSubnet, netip.Addr{}, nil, testCreatedAt, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeKubeconfigs(dir, ca, "c", "https://127.0.0.1:6443", false, testCreatedAt, 0); err != nil {
		t.Fatal(err)
	}
	inst := &kube.Installation{Version: "v1.36.3", Dir: t.TempDir()}
	comps := plan(dir, inst, ports{1, 2, 3, 4, 5, 6}, localhost, defaultServiceSubnet, defaultPodSubnet, false)
	for _, c := range comps {
		for _, arg := range c.Args[1:] {
			_, value, ok := strings.Cut(arg, "=")
			if !ok || !strings.HasPrefix(value, dir+string(filepath.Separator)) || filepath.Base(value) == "etcd" {
				continue
			}
			if _, err := os.Stat(value); err != nil {
				t.Errorf("%s %s: %v", c.Name, arg, err)
			}
		}
	}
}

// TestEtcdPeerPortIsTLS: etcd's peer URLs are https, and its peer port
// takes only the peer certificate of the etcd CA.
func TestEtcdPeerPortIsTLS(t *testing.T) {
	dir := t.TempDir()
	inst := &kube.Installation{Version: "v1.36.3", Dir: t.TempDir()}
	etcd := plan(dir, inst, ports{EtcdClient: 1, EtcdPeer: 2}, localhost, defaultServiceSubnet, defaultPodSubnet, false)[0]
	p := func(name string) string { return filepath.Join(dir, pkiDir, name) }
	for _, want := range []string{
		"--listen-peer-urls=https://127.0.0.1:2",
		"--initial-advertise-peer-urls=https://127.0.0.1:2",
		"--initial-cluster=default=https://127.0.0.1:2",
		"--peer-cert-file=" + p("etcd-peer.crt"),
		"--peer-key-file=" + p("etcd-peer.key"),
		"--peer-trusted-ca-file=" + p("etcd-ca.crt"),
		"--peer-client-cert-auth=true",
		"--peer-cert-allowed-cn=" + etcdPeerCN,
	} {
		if !slices.Contains(etcd.Args, want) {
			t.Errorf("etcd args lack %s:\n%s", want, strings.Join(etcd.Args, "\n"))
		}
	}
	for _, a := range etcd.Args {
		if strings.Contains(a, "http://") {
			t.Errorf("etcd listens in plain HTTP: %s", a)
		}
	}
}

// TestDurable: etcd syncs to disk in a durable provider's clusters, and
// makeDurable turns an older plan durable.
func TestDurable(t *testing.T) {
	dir := t.TempDir()
	inst := &kube.Installation{Version: "v1.36.3", Dir: t.TempDir()}
	for _, durable := range []bool{false, true} {
		etcd := plan(dir, inst, ports{}, localhost, defaultServiceSubnet, defaultPodSubnet, durable)[0]
		if got := slices.Contains(etcd.Args, unsafeNoFsync); got == durable {
			t.Errorf("durable %v: etcd args have %s: %v", durable, unsafeNoFsync, got)
		}
	}

	st := testPlan("c")
	st.Components = plan(dir, inst, ports{}, localhost, defaultServiceSubnet, defaultPodSubnet, false)
	if err := makeDurable(dir, &st); err != nil {
		t.Fatal(err)
	}
	var written clusterState
	if err := readJSON(filepath.Join(dir, clusterFile), &written); err != nil {
		t.Fatal(err)
	}
	for _, s := range []clusterState{st, written} {
		if slices.Contains(s.Components[0].Args, unsafeNoFsync) {
			t.Errorf("after makeDurable etcd still runs with %s", unsafeNoFsync)
		}
		if len(s.Components[0].Args) != len(st.Components[0].Args) || len(s.Components) != 5 {
			t.Errorf("makeDurable changed more than the flag: %+v", s.Components)
		}
	}
}
