package local

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A real-node cluster runs everything under one cgroup, /<Cgroup> in every
// hierarchy (cgroup v1 has one per controller, v2 one in all): its
// supervisor and components in supervisorCgroup, its pods under kubepods,
// where the kubelet puts them. A delete kills whatever is left in the tree
// (pods included, which are in no session of ours) and removes it.
const supervisorCgroup = "ephemera"

// cgroupMounts returns the mount points of every cgroup hierarchy whose root
// is mounted, v1 and v2.
func cgroupMounts() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	seen := map[string]bool{}
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options ... - fstype source ...
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+1 >= len(fields) {
			continue
		}
		fstype, root, mountpoint := fields[sep+1], fields[3], unescapeMount(fields[4])
		if (fstype == "cgroup" || fstype == "cgroup2") && root == "/" && !seen[mountpoint] {
			seen[mountpoint] = true
			out = append(out, mountpoint)
		}
	}
	return out, sc.Err()
}

// unescapeMount undoes the octal escapes of /proc/self/mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// createCgroup makes /name/sub in every hierarchy. A v1 cpuset group can
// hold no process until it has CPUs and memory nodes: they are copied from
// the parent.
func createCgroup(name, sub string) ([]string, error) {
	mounts, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, m := range mounts {
		parent := m
		for _, part := range []string{name, sub} {
			dir := filepath.Join(parent, part)
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return nil, fmt.Errorf("create cgroup: %w", err)
			}
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if b, err := os.ReadFile(filepath.Join(parent, f)); err == nil && strings.TrimSpace(string(b)) != "" {
					cur, _ := os.ReadFile(filepath.Join(dir, f))
					if strings.TrimSpace(string(cur)) == "" {
						if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
							return nil, fmt.Errorf("set up cgroup %s: %w", dir, err)
						}
					}
				}
			}
			parent = dir
		}
		dirs = append(dirs, parent)
	}
	return dirs, nil
}

// joinCgroup moves this process into /name/sub of every hierarchy; its
// children start there.
func joinCgroup(name, sub string) error {
	dirs, err := createCgroup(name, sub)
	if err != nil {
		return err
	}
	pid := []byte(strconv.Itoa(os.Getpid()))
	for _, d := range dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), pid, 0o644); err != nil {
			return fmt.Errorf("join cgroup %s: %w", d, err)
		}
	}
	return nil
}

// removeCgroup kills every process in /name of every hierarchy and removes
// the groups, deepest first, repeating until they are gone or ctx ends.
func removeCgroup(ctx context.Context, name string) error {
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	for {
		var left []string
		for _, m := range mounts {
			root := filepath.Join(m, name)
			if _, err := os.Stat(root); err != nil {
				continue
			}
			killCgroupTree(root)
			if err := removeCgroupTree(root); err != nil {
				left = append(left, root)
			}
		}
		if len(left) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("remove cgroups %v: processes did not exit: %w", left, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// cgroupTree returns root and every group below it, deepest first.
func cgroupTree(root string) []string {
	var dirs []string
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	sort.Slice(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
	return dirs
}

func killCgroupTree(root string) {
	for _, d := range cgroupTree(root) {
		for _, pid := range cgroupProcs(d) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func removeCgroupTree(root string) error {
	var errs []error
	for _, d := range cgroupTree(root) {
		if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// cgroupProcs returns the processes in one group (not below it).
func cgroupProcs(dir string) []int {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}
