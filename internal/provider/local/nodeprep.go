package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ephemera-dev/ephemera/internal/exec"
)

// The supervisor of a real-node cluster starts in a network namespace and a
// mount namespace of its own (see startSupervisor); once the creator has
// connected the network (attachNodeNetwork), prepareNode finishes the
// set-up there before any component starts.

// prepareNode joins the cluster's cgroup, covers the host paths the node
// components write to (see nodeMounts) and turns on forwarding for pods in
// the cluster's network namespace.
func prepareNode(dir string, st clusterState) error {
	node := st.Node
	if err := joinCgroup(node.Network.Cgroup, supervisorCgroup); err != nil {
		return err
	}
	if err := coverHostPaths(dir, node.Keep); err != nil {
		return fmt.Errorf("set up the node's mounts: %w", err)
	}
	// Per network namespace: they change nothing on the host.
	sysctls := map[string]string{
		"net/ipv4/ip_forward":                 "1",
		"net/bridge/bridge-nf-call-iptables":  "1",
		"net/bridge/bridge-nf-call-ip6tables": "1",
	}
	for k, v := range sysctls {
		if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
			return fmt.Errorf("set %s in the cluster's network namespace: %w", strings.ReplaceAll(k, "/", "."), err)
		}
	}
	if err := coverResolvConf(filepath.Join(dir, nodeResolvConf)); err != nil {
		return fmt.Errorf("point the node's resolver at the host's DNS forwarder: %w", err)
	}
	if err := routeInsideNetns(node.Network, node.LB); err != nil {
		return err
	}
	return masqueradeNode(context.Background())
}

// masqueradeNode hides the cluster's pods behind the node's address on
// their way out of the namespace: the host then knows only the veth's /30,
// and every cluster may use the same pod subnet.
func masqueradeNode(ctx context.Context) error {
	cmd := exec.Command(ctx, "iptables-restore", "--noflush", "--wait")
	cmd.Stdin = strings.NewReader("*nat\n-A POSTROUTING -o " + nodeInterface + " -m comment --comment \"ephemera: egress behind the node\" -j MASQUERADE\nCOMMIT\n")
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("masquerade the cluster's egress: %w", err)
	}
	return nil
}

// coverResolvConf makes the node's processes (containerd's pulls, the
// kubelet) resolve through the file at path, which names the host's DNS
// forwarder: it is bound over the host's /etc/resolv.conf in the cluster's
// mount namespace, or written in place of its target when that is a link
// into a path the node covers (systemd-resolved's /run/systemd/resolve).
func coverResolvConf(path string) error {
	target := hostResolvConf
	if link, err := os.Readlink(hostResolvConf); err == nil {
		if !filepath.IsAbs(link) {
			link = filepath.Join(filepath.Dir(hostResolvConf), link)
		}
		target = filepath.Clean(link)
	}
	if _, err := os.Stat(target); err != nil {
		// A dangling link now: its target was under a covered path.
		data, rerr := os.ReadFile(path)
		if rerr != nil {
			return rerr
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	}
	return unix.Mount(path, target, "", unix.MS_BIND, "")
}

// coverHostPaths mounts nodeMounts over the host paths, in this process's
// own mount namespace, then binds each kept path back in place when a
// mount covered it (a state or cache dir under /var/lib, say).
func coverHostPaths(dir string, keep []string) error {
	// Open what must stay visible before anything covers it.
	fds := map[string]int{}
	for _, k := range append([]string{dir}, keep...) {
		fd, err := unix.Open(k, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", k, err)
		}
		defer unix.Close(fd)
		fds[k] = fd
	}
	for _, m := range nodeMounts {
		var err error
		if m.source == "" {
			err = unix.Mount("tmpfs", m.target, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755")
		} else {
			src := fmt.Sprintf("/proc/self/fd/%d/%s", fds[dir], m.source)
			err = unix.Mount(src, m.target, "", unix.MS_BIND|unix.MS_REC, "")
		}
		if err != nil {
			return fmt.Errorf("mount over %s: %w", m.target, err)
		}
		for path, fd := range fds {
			if !strings.HasPrefix(path+"/", m.target+"/") {
				continue
			}
			if err := os.MkdirAll(path, 0o755); err != nil {
				return err
			}
			if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", fd), path, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
				return fmt.Errorf("keep %s visible: %w", path, err)
			}
		}
	}
	// The kubelet and containerd expect these to exist.
	for _, d := range []string{"/run/netns", "/var/lib/kubelet", "/var/lib/cni", "/var/log/pods", "/var/log/containers"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// importImages waits for containerd and imports the node's images (pause,
// CoreDNS), so the kubelet never tries to pull them.
func importImages(ctx context.Context, archives []string) error {
	if err := waitSocket(ctx, containerdSocket); err != nil {
		return err
	}
	for _, a := range archives {
		if _, err := ctrImport(ctx, a); err != nil {
			return err
		}
	}
	return nil
}

// ctrImport imports one image archive into the k8s.io namespace of the
// cluster's containerd and returns the names it imported. ctr runs in the
// cluster's mount namespace, where containerd's socket is: directly when
// the caller is there already, else behind the prefix (nsenter). The
// archive is read here and streamed in, so any path of the caller works.
func ctrImport(ctx context.Context, archive string, prefix ...string) ([]string, error) {
	f, err := os.Open(archive)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	argv := append(prefix, "ctr", "--address", containerdSocket, "--namespace", "k8s.io", "images", "import", "-")
	cmd := exec.Command(ctx, argv[0], argv[1:]...)
	cmd.Stdin = f
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", archive, err)
	}
	names := importedNames(string(out))
	if len(names) == 0 {
		return nil, fmt.Errorf("import %s: containerd imported no named image (output: %q)", archive, out)
	}
	return names, nil
}

// importedNames parses `ctr images import` output: "unpacking NAME
// (sha256:...)...done" per image.
func importedNames(out string) []string {
	var names []string
	for _, line := range strings.Split(out, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "unpacking ")
		if !ok {
			continue
		}
		if name, _, ok := strings.Cut(rest, " "); ok {
			names = append(names, name)
		}
	}
	return names
}

// dialUnix connects to a unix socket and hangs up: it tells whether the
// socket accepts connections.
func dialUnix(ctx context.Context, path string) error {
	c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "unix", path)
	if err != nil {
		return err
	}
	return c.Close()
}

// waitSocket waits until a unix socket accepts connections.
func waitSocket(ctx context.Context, path string) error {
	for {
		err := dialUnix(ctx, path)
		if err == nil {
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ECONNREFUSED) {
			return fmt.Errorf("connect to %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", path, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}
