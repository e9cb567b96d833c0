package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"io/fs"
	"maps"
	"net"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ephemera-dev/ephemera/internal/exec"
	"github.com/ephemera-dev/ephemera/internal/kube"
)

// hostState is what a cluster could leave behind on the host, listed item
// by item: every test compares the host before and after (see newHarness).
type hostState map[string]map[string]bool

// nodeProcessNames are the programs of a cluster, by /proc/PID/comm (at most
// 15 characters).
var nodeProcessNames = []string{
	"etcd", "kube-apiserver", "kube-controller", "kube-scheduler", "kwok",
	"containerd", "containerd-shim", "runc", "kubelet", "kube-proxy",
	"pause", "coredns", "hello",
}

// hostPaths are the paths containerd, the kubelet and CNI write to unless a
// cluster keeps them to itself. The census adds the default registry dir
// (<cache dir>/registry), which tests never use (see harness.registryDir).
var hostPaths = []string{
	"/run/netns", "/run/containerd", "/run/runc", "/var/lib/kubelet", "/var/lib/cni",
	"/var/lib/containerd", "/var/log/containers", "/var/log/pods",
}

// snapshotHost lists, in the host's namespaces: the processes of cluster
// programs, the network and mount namespaces processes use, network
// interfaces, routes, mounts, top-level cgroups of every hierarchy, iptables
// rules and the entries of hostPaths.
func snapshotHost() hostState {
	s := hostState{}
	add := func(kind, item string) {
		if s[kind] == nil {
			s[kind] = map[string]bool{}
		}
		s[kind][item] = true
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || isZombie(pid) {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if name := strings.TrimSpace(string(comm)); slices.Contains(nodeProcessNames, name) || name == "ephemera" && isRegistryDaemon(e.Name()) {
			add("processes", e.Name()+" "+name)
		}
		for _, ns := range []string{"net", "mnt"} {
			if link, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", ns)); err == nil {
				add("namespaces", link)
			}
		}
	}
	ifaces, _ := net.Interfaces()
	for _, i := range ifaces {
		add("interfaces", i.Name)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 4 {
			add("mounts", f[4])
		}
	}
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
	hierarchies = append(hierarchies, "/sys/fs/cgroup")
	for _, h := range hierarchies {
		groups, _ := os.ReadDir(h)
		for _, g := range groups {
			if g.IsDir() {
				add("cgroups", filepath.Join(h, g.Name()))
			}
		}
	}
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		out, _ := osexec.Command(save).Output()
		for _, line := range strings.Split(string(out), "\n") {
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			// Chain lines carry packet counters: [packets:bytes].
			if i := strings.Index(line, " ["); strings.HasPrefix(line, ":") && i > 0 {
				line = line[:i]
			}
			add("iptables", save+": "+line)
		}
	}
	routes, _ := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	for _, r := range routes {
		add("routes", r.String())
	}
	paths := hostPaths
	if cache, err := kube.DefaultCacheDir(); err == nil {
		paths = append(slices.Clip(paths), filepath.Join(cache, "registry"))
	}
	for _, p := range paths {
		names, _ := os.ReadDir(p)
		for _, n := range names {
			add("files", filepath.Join(p, n.Name()))
		}
	}
	return s
}

// isRegistryDaemon reports whether pid runs `ephemera registry serve`, the
// image cache and local registry daemon, which outlives clusters: a test
// must stop the one it started (registry stop).
func isRegistryDaemon(pid string) bool {
	cmdline, _ := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
	return bytes.Contains(cmdline, []byte("\x00registry\x00serve"))
}

// leftSince lists what is in s but was not in before, kind by kind.
func (s hostState) leftSince(before hostState) []string {
	var out []string
	for _, kind := range slices.Sorted(maps.Keys(s)) {
		for _, item := range slices.Sorted(maps.Keys(s[kind])) {
			if before[kind][item] {
				continue
			}
			if pid, _, ok := strings.Cut(item, " "); ok && kind == "processes" {
				cmdline, _ := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
				item += " (" + exec.Tail(strings.ReplaceAll(string(cmdline), "\x00", " "), 300) + ")"
			}
			out = append(out, kind+": "+item)
		}
	}
	return out
}

// assertHostClean waits a little for processes to finish exiting, then
// fails the test for anything on the host that was not there before.
func (h *harness) assertHostClean(before hostState) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := snapshotHost().leftSince(before)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			h.t.Errorf("left on the host after every cluster was deleted:\n  %s", strings.Join(left, "\n  "))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// isZombie reports whether pid has exited (or is gone).
func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}

// clusterPIDs returns the cluster's processes: those naming its dir, and
// those in its cgroup (pods, containerd shims).
func clusterPIDs(dir string) []string {
	seen := map[string]bool{}
	for _, p := range processesUnder(dir) {
		seen[p[:strings.IndexByte(p, ':')]] = true
	}
	var plan struct {
		Node *struct {
			Network struct {
				Cgroup string `json:"cgroup"`
			} `json:"network"`
		} `json:"node"`
	}
	if b, err := os.ReadFile(filepath.Join(dir, "cluster.json")); err == nil && json.Unmarshal(b, &plan) == nil && plan.Node != nil {
		// The pids hierarchy on cgroup v1, the unified one on v2.
		for _, root := range []string{"/sys/fs/cgroup/pids", "/sys/fs/cgroup"} {
			_ = filepath.WalkDir(filepath.Join(root, plan.Node.Network.Cgroup), func(path string, d fs.DirEntry, err error) error {
				if err == nil && d.Name() == "cgroup.procs" {
					b, _ := os.ReadFile(path)
					for _, pid := range strings.Fields(string(b)) {
						seen[pid] = true
					}
				}
				return nil
			})
		}
	}
	return slices.Sorted(maps.Keys(seen))
}
