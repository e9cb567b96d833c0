package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/kube"
	"github.com/ephemera-dev/ephemera/internal/lifecycle"
	"github.com/ephemera-dev/ephemera/internal/provider"
)

// realNodeWait bounds each wait of the real-node tests: for the cluster to
// be usable, a node to be Ready, a pod to run.
const realNodeWait = 2 * time.Minute

// realNodeProvider returns a provider whose clusters are supervised by this
// test binary (see TestMain), with the installed default Kubernetes
// version, or skips the test when this host cannot run a real node.
func realNodeProvider(t *testing.T) *Provider {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a cluster with a real node")
	}
	cacheDir, err := kube.DefaultCacheDir()
	if err != nil {
		t.Skip(err)
	}
	cache := kube.Cache{Dir: cacheDir}
	inst, err := cache.Get(kube.DefaultVersion)
	if err != nil {
		t.Skipf("needs Kubernetes %s installed: %v", kube.DefaultVersion, err)
	}
	if err := checkRealNodeHost(inst); err != nil {
		t.Skip(err)
	}
	return New(Options{StateDir: t.TempDir(), Cache: cache, Supervisor: []string{os.Args[0], testSupervisorArg}})
}

// TestRestartRealNode stops a cluster with a real node and a running pod,
// checks that nothing of it runs any more, refuses a restart while another
// interface has its node network, restarts it on its data and checks that
// the node is Ready again, its old pod and a new one run and its objects
// are still there; the delete at the end leaves nothing behind.
func TestRestartRealNode(t *testing.T) {
	p := realNodeProvider(t)
	ctx := t.Context()
	const name = "restart"
	dir := p.clusterDir(name)
	names := namesFor(dir)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := p.Delete(ctx, name); err != nil {
			t.Errorf("cleanup: delete: %v", err)
		}
	})

	one, zero := int32(1), int32(0)
	spec := v1alpha1.ClusterTemplateSpec{Nodes: v1alpha1.NodesSpec{Real: &one, Simulated: &zero}}
	start := time.Now()
	if _, err := lifecycle.Create(ctx, p, name, spec, lifecycle.CreateOptions{Wait: realNodeWait}); err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Logf("created in %s", time.Since(start).Round(time.Millisecond))
	var st clusterState
	if err := readJSON(filepath.Join(dir, clusterFile), &st); err != nil || st.Node == nil {
		t.Fatalf("cluster.json: %v, node %v", err, st.Node)
	}
	client := clientFor(t, p, name)
	kept := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kept"}, Data: map[string]string{"made": "before the stop"}}
	if _, err := client.CoreV1().ConfigMaps("default").Create(ctx, kept, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	runPausePod(t, client, "before")

	pids := clusterPIDs(dir)
	if len(pids) <= len(processesOf(dir)) {
		t.Fatalf("no process of the cluster outside the supervisor's session (pods, shims): %v", pids)
	}
	start = time.Now()
	if err := p.Stop(ctx, name); err != nil {
		t.Fatalf("stop: %v", err)
	}
	t.Logf("stopped in %s", time.Since(start).Round(time.Millisecond))
	assertStopped(t, dir, pids)
	if c, err := p.Get(ctx, name); err != nil || c.Phase != provider.PhaseBroken {
		t.Fatalf("after stop: %+v, %v; want Broken", c, err)
	}
	if err := p.Stop(ctx, name); err != nil {
		t.Errorf("second stop: %v", err)
	}

	t.Run("node network taken", func(t *testing.T) {
		// A veth pair on the host: this kernel may lack dummy devices.
		id := names.Veth[len("eph-"):][:6]
		other, peer := "eph-t-"+id, "eph-tp-"+id
		taken := st.Node.Network.HostIP.String() + "/30"
		if out, err := osexec.Command("ip", "link", "add", other, "type", "veth", "peer", "name", peer).CombinedOutput(); err != nil {
			t.Fatalf("add an interface: %v\n%s", err, out)
		}
		defer func() {
			if out, err := osexec.Command("ip", "link", "del", other).CombinedOutput(); err != nil {
				t.Errorf("delete the interface: %v\n%s", err, out)
			}
		}()
		if out, err := osexec.Command("ip", "addr", "add", taken, "dev", other).CombinedOutput(); err != nil {
			t.Fatalf("address the interface: %v\n%s", err, out)
		}
		err := p.Restart(ctx, name)
		if err == nil {
			t.Fatal("restart succeeded while another interface has the node network")
		}
		for _, want := range []string{st.Node.Network.Subnet.String(), other, "delete the cluster and create it again"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("restart error %q does not mention %q", err, want)
			}
		}
		assertStopped(t, dir, nil)
	})

	start = time.Now()
	if err := p.Restart(ctx, name); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if _, err := lifecycle.Adopt(ctx, p, name, lifecycle.CreateOptions{Wait: realNodeWait}); err != nil {
		t.Fatalf("wait for the restarted cluster: %v", err)
	}
	if c, err := p.Get(ctx, name); err != nil || c.Phase != provider.PhaseRunning {
		t.Fatalf("after restart: %+v, %v; want Running", c, err)
	}
	// The node was Ready when it stopped: it must report again.
	waitFor(t, "node "+RealNodeName+" to report Ready after the restart", func() (bool, error) {
		n, err := client.CoreV1().Nodes().Get(ctx, RealNodeName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status == corev1.ConditionTrue && !c.LastHeartbeatTime.Time.Before(start.Truncate(time.Second)), nil
			}
		}
		return false, nil
	})
	runPausePod(t, client, "after")
	t.Logf("restarted, node Ready and a new pod Running in %s", time.Since(start).Round(time.Millisecond))
	// The old pod runs again, in a new sandbox.
	waitPodRunning(t, client, "before", start)
	cm, err := client.CoreV1().ConfigMaps("default").Get(ctx, "kept", metav1.GetOptions{})
	if err != nil || cm.Data["made"] != "before the stop" {
		t.Errorf("ConfigMap made before the stop: %v, %v", cm, err)
	}

	// A killed supervisor takes its components along (parent-death
	// signal) but not the pods: Restart stops them first.
	b, err := os.ReadFile(filepath.Join(dir, supervisorPIDFile))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(string(b))
	if err != nil {
		t.Fatal(err)
	}
	pids = clusterPIDs(dir)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the cluster to show as Broken once its supervisor is killed", func() (bool, error) {
		c, err := p.Get(ctx, name)
		return err == nil && c.Phase == provider.PhaseBroken, err
	})
	start = time.Now()
	if err := p.Restart(ctx, name); err != nil {
		t.Fatalf("restart after a killed supervisor: %v", err)
	}
	for _, pid := range pids {
		if !isZombie(pid) && !slices.Contains(clusterPIDs(dir), pid) {
			t.Errorf("process %d of the old run is alive outside the restarted cluster", pid)
		}
	}
	if _, err := lifecycle.Adopt(ctx, p, name, lifecycle.CreateOptions{Wait: realNodeWait}); err != nil {
		t.Fatalf("wait for the cluster restarted after a killed supervisor: %v", err)
	}
	waitPodRunning(t, client, "after", start)
	t.Logf("restarted after a killed supervisor, old pod Running again in %s", time.Since(start).Round(time.Millisecond))

	pids = clusterPIDs(dir)
	if err := p.Delete(ctx, name); err != nil {
		t.Fatalf("delete: %v", err)
	}
	assertStopped(t, dir, pids)
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("cluster dir left after delete: %v", err)
	}
	mounts, err := cgroupMounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		if _, err := os.Stat(filepath.Join(m, names.Cgroup)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("cgroup %s left after delete", filepath.Join(m, names.Cgroup))
		}
	}
}

// clientFor returns a client of a cluster with its admin kubeconfig.
func clientFor(t *testing.T, p *Provider, name string) kubernetes.Interface {
	t.Helper()
	kubeconfig, err := p.Kubeconfig(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Timeout = 10 * time.Second
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// runPausePod runs a pod of the pause image Create imported and waits until
// it is Running.
func runPausePod(t *testing.T, client kubernetes.Interface, name string) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:            "pause",
			Image:           kube.PauseImageRef,
			ImagePullPolicy: corev1.PullNever,
		}}},
	}
	if _, err := client.CoreV1().Pods("default").Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s: %v", name, err)
	}
	waitPodRunning(t, client, name, time.Time{})
}

// waitPodRunning waits until a pod is Running and Ready with its
// containers started at or after since (to the second).
func waitPodRunning(t *testing.T, client kubernetes.Interface, name string, since time.Time) {
	t.Helper()
	var last string
	waitFor(t, "pod "+name+" to run", func() (bool, error) {
		pod, err := client.CoreV1().Pods("default").Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = fmt.Sprintf("phase %s, conditions %+v, containers %+v", pod.Status.Phase, pod.Status.Conditions, pod.Status.ContainerStatuses)
		for _, c := range pod.Status.ContainerStatuses {
			if c.State.Running == nil || c.State.Running.StartedAt.Time.Before(since.Truncate(time.Second)) {
				return false, nil
			}
		}
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodReady {
				return pod.Status.Phase == corev1.PodRunning && c.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	}, func() string { return last })
}

// waitFor polls done until it reports true, failing the test after
// realNodeWait; describe, when given, says what was last seen.
func waitFor(t *testing.T, what string, done func() (bool, error), describe ...func() string) {
	t.Helper()
	deadline := time.Now().Add(realNodeWait)
	for {
		ok, err := done()
		if err != nil {
			t.Fatalf("wait for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("%s did not happen within %s", what, realNodeWait)
			for _, d := range describe {
				msg += ": " + d()
			}
			t.Fatal(msg)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("wait for %s: %v", what, t.Context().Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// clusterPIDs returns the live processes of the cluster in dir: those of
// its supervisor's session (processesOf) and those in its cgroups (pods,
// containerd's shims).
func clusterPIDs(dir string) []int {
	pids := processesOf(dir)
	mounts, _ := cgroupMounts()
	for _, m := range mounts {
		for _, d := range cgroupTree(filepath.Join(m, namesFor(dir).Cgroup)) {
			for _, pid := range cgroupProcs(d) {
				if !isZombie(pid) && !slices.Contains(pids, pid) {
					pids = append(pids, pid)
				}
			}
		}
	}
	slices.Sort(pids)
	return pids
}

// assertStopped checks that no process of the cluster in dir is left, the
// given ones included, and that the host end of its veth is gone or down.
func assertStopped(t *testing.T, dir string, pids []int) {
	t.Helper()
	var alive []string
	for _, pid := range pids {
		if !isZombie(pid) {
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			alive = append(alive, fmt.Sprintf("%d (%s)", pid, strings.ReplaceAll(string(cmdline), "\x00", " ")))
		}
	}
	if len(alive) > 0 {
		t.Errorf("processes of the cluster still alive:\n%s", strings.Join(alive, "\n"))
	}
	if left := clusterPIDs(dir); len(left) > 0 {
		t.Errorf("processes of the cluster left: %v", left)
	}
	veth := namesFor(dir).Veth
	if iface, err := net.InterfaceByName(veth); err == nil && iface.Flags&net.FlagUp != 0 {
		t.Errorf("the cluster's host veth %s is still up", veth)
	}
}
