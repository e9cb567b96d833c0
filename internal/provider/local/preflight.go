package local

import (
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ephemera-dev/ephemera/internal/kube"
)

// ErrHostCannotRunNode is returned when this host lacks what a real node
// needs; the message says what is missing and how to get it.
var ErrHostCannotRunNode = fmt.Errorf("this host cannot run a real node")

// nodePrograms are the host programs a real node runs, with the Debian
// package that has each.
var nodePrograms = []struct{ name, pkg string }{
	{"containerd", "containerd"},
	{"containerd-shim-runc-v2", "containerd"},
	{"ctr", "containerd"},
	{"runc", "runc"},
	{"iptables", "iptables"},
	{"iptables-restore", "iptables"},
	{"ip", "iproute2"},
	{"nsenter", "util-linux"},
	{"conntrack", "conntrack"},
}

// cniPlugins are the CNI plugins of a real node's network.
var cniPlugins = []string{"bridge", "host-local", "portmap", "loopback"}

// checkRealNodeHost says what this host lacks to run a real node: root,
// programs, CNI plugins, cgroups, the bridge netfilter module, or node
// binaries and images in the installation.
func checkRealNodeHost(inst *kube.Installation) error {
	var missing []string
	hint := func(what, fix string) { missing = append(missing, fmt.Sprintf("  - %s: %s", what, fix)) }
	if os.Geteuid() != 0 {
		hint("root", "a real node needs its own network namespace, cgroups and mounts; run ephemera as root")
	}
	var pkgs, progs []string
	for _, p := range nodePrograms {
		if _, err := osexec.LookPath(p.name); err != nil {
			progs = append(progs, p.name)
			if !slices.Contains(pkgs, p.pkg) {
				pkgs = append(pkgs, p.pkg)
			}
		}
	}
	var plugins []string
	for _, p := range cniPlugins {
		if _, err := os.Stat(filepath.Join(cniBinDir, p)); err != nil {
			plugins = append(plugins, p)
		}
	}
	if len(plugins) > 0 {
		pkgs = append(pkgs, "containernetworking-plugins")
		progs = append(progs, "CNI plugins "+strings.Join(plugins, ", ")+" in "+cniBinDir)
	}
	if len(progs) > 0 {
		hint(strings.Join(progs, ", "), "apt-get install "+strings.Join(pkgs, " "))
	}
	if mounts, err := cgroupMounts(); err != nil || len(mounts) == 0 {
		hint("cgroups", "no cgroup file system is mounted under /sys/fs/cgroup")
	}
	if _, err := os.Stat("/proc/sys/net/bridge"); err != nil {
		hint("bridge netfilter", "modprobe br_netfilter")
	}
	var files []string
	for _, f := range []string{inst.Bin(kube.Kubelet), inst.Bin(kube.Proxy), inst.Image(kube.PauseImage), inst.Image(kube.CoreDNSImage)} {
		if _, err := os.Stat(f); err != nil {
			files = append(files, filepath.Base(f))
		}
	}
	if len(files) > 0 {
		hint("node binaries and images of Kubernetes "+inst.Version+" ("+strings.Join(files, ", ")+")", "ephemera kube install --version "+inst.Version)
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("%w; missing:\n%s\nOr create a cluster without one: --real-nodes 0 --simulated-nodes 3", ErrHostCannotRunNode, strings.Join(missing, "\n"))
}
