package local

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeproxyv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/ephemera-dev/ephemera/internal/kube"
	"github.com/ephemera-dev/ephemera/internal/provider/local/portproxy"
)

// RealNodeName is the name of a cluster's real node.
const RealNodeName = "node-1"

// Component names of a real node.
const (
	containerdComponent = "containerd"
	kubeletComponent    = kube.Kubelet
	proxyComponent      = kube.Proxy
)

// Paths inside a real-node cluster's mount namespace. The supervisor covers
// /run with a tmpfs and /var/lib and /var/log with dirs of the cluster, so
// the paths containerd, the kubelet and CNI write to without asking
// (/run/containerd/s, /run/netns, /var/lib/kubelet/device-plugins,
// /var/lib/cni, /var/log/containers, /run/xtables.lock) are the cluster's
// own and vanish with it.
const (
	containerdSocket = "/run/containerd/containerd.sock"
	nodeDir          = "node" // in the cluster dir: config and the dirs below
	nodeLibDir       = "node/lib"
	nodeLogDir       = "node/log"
	cniConfDir       = "node/cni"
	nodeResolvConf   = "node/resolv.conf"
	cniBinDir        = "/usr/lib/cni"
)

// nodeMounts are the host paths a real-node cluster covers in its mount
// namespace, and what with: a tmpfs when source is "", else a dir in the
// cluster dir.
var nodeMounts = []struct{ target, source string }{
	{"/run", ""},
	{"/var/lib", nodeLibDir},
	{"/var/log", nodeLogDir},
}

// Fixed ports inside a real-node cluster's network namespace, where nothing
// else listens.
var netnsPorts = ports{
	EtcdClient:        2379,
	EtcdPeer:          2380,
	APIServer:         6443,
	ControllerManager: 10257,
	Scheduler:         10259,
	Kwok:              10247,
}

// realNode is the plan of a cluster's real node.
type realNode struct {
	Network nodeNetwork `json:"network"`
	// Keep are host paths the components need that a node mount may cover
	// (the cluster dir, the Kubernetes installation): the supervisor binds
	// them back in place.
	Keep []string `json:"keep"`
	// Images are image archives imported into containerd before the
	// kubelet starts.
	Images []string `json:"images"`
	// DNS is the cluster DNS Service's ClusterIP.
	DNS netip.Addr `json:"dns"`
	// LB is the cluster's LoadBalancer range, routed into its network
	// namespace; its first address is the ingress address. Clusters made
	// before it existed have none.
	LB netip.Prefix `json:"lb,omitzero"`
	// IngressDomain resolves, with every name under it, to the ingress
	// address.
	IngressDomain string `json:"ingressDomain,omitempty"`
	// LocalDomain, when set, makes ephemera's DNS forwarders answer
	// *.<cluster>.<LocalDomain> with the ingress address themselves.
	LocalDomain string `json:"localDomain,omitempty"`
	// DNSUpstreams replace the host's resolvers (its resolv.conf's) as
	// where the DNS forwarder sends external names.
	DNSUpstreams []netip.AddrPort `json:"dnsUpstreams,omitempty"`
	// HostPorts forward host ports to the ingress address; host port 0
	// is resolved at create.
	HostPorts []portproxy.Mapping `json:"hostPorts,omitempty"`
	// ReachClusters lets the cluster open connections to other clusters
	// (see firewallPlan).
	ReachClusters bool `json:"reachClusters,omitempty"`
	// Registry is how the node pulls through the host's registry cache
	// (see registry.go); nil: it pulls from registries directly.
	Registry *nodeRegistry `json:"registry,omitempty"`
	// InsecureRegistries, HOST:PORT, are pulled over plain HTTP.
	InsecureRegistries []string `json:"insecureRegistries,omitempty"`
}

// hostLacksSysResource reports whether this process may not lower
// oom_score_adj (no CAP_SYS_RESOURCE, as in some sandboxes): runc then fails
// every container unless containerd leaves the score alone.
func hostLacksSysResource() bool {
	const capSysResource = 24
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return true
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			var caps uint64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%x", &caps); err != nil {
				return true
			}
			return caps&(1<<capSysResource) == 0
		}
	}
	return true
}

var containerdConfig = template.Must(template.New("containerd").Parse(`version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{{.Socket}}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{{.PauseImage}}"
  restrict_oom_score_adj = {{.RestrictOOMScoreAdj}}
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{{.CNIBinDir}}"
    conf_dir = "{{.CNIConfDir}}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{{.CertsDir}}"
`))

// writeNodeConfig writes the configuration of containerd, CNI, the kubelet
// and kube-proxy for the real node of the cluster in dir.
func writeNodeConfig(dir string, node realNode, cgroup, podSubnet string) error {
	f := func(name string) string { return filepath.Join(dir, name) }
	for _, d := range []string{nodeDir, nodeLibDir, nodeLogDir, cniConfDir} {
		if err := os.MkdirAll(f(d), 0o755); err != nil {
			return err
		}
	}
	var buf bytes.Buffer
	err := containerdConfig.Execute(&buf, map[string]any{
		"Socket":              containerdSocket,
		"PauseImage":          kube.PauseImageRef,
		"RestrictOOMScoreAdj": hostLacksSysResource(),
		"CNIBinDir":           cniBinDir,
		"CNIConfDir":          f(cniConfDir),
		"CertsDir":            f(certsDir),
	})
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"node/containerd.toml": buf.Bytes(),
		nodeResolvConf:         []byte("nameserver " + node.Network.HostIP.String() + "\n"),
	}

	if err := writeHostsFiles(dir, node); err != nil {
		return fmt.Errorf("write the registries' hosts.toml: %w", err)
	}
	cni, err := json.MarshalIndent(cniConfig(podSubnet), "", "  ")
	if err != nil {
		return err
	}
	files[filepath.Join(cniConfDir, "10-ephemera.conflist")] = cni

	p := func(name string) string { return filepath.Join(dir, pkiDir, name) }
	kubelet := kubeletv1beta1.KubeletConfiguration{
		TypeMeta:           metav1.TypeMeta{APIVersion: "kubelet.config.k8s.io/v1beta1", Kind: "KubeletConfiguration"},
		Address:            node.Network.NodeIP.String(),
		Port:               10250,
		ReadOnlyPort:       0,
		HealthzBindAddress: localhost,
		HealthzPort:        ptr.To[int32](10248),
		TLSCertFile:        p("kubelet-server.crt"),
		TLSPrivateKeyFile:  p("kubelet-server.key"),
		Authentication: kubeletv1beta1.KubeletAuthentication{
			X509:      kubeletv1beta1.KubeletX509Authentication{ClientCAFile: p("ca.crt")},
			Webhook:   kubeletv1beta1.KubeletWebhookAuthentication{Enabled: ptr.To(true)},
			Anonymous: kubeletv1beta1.KubeletAnonymousAuthentication{Enabled: ptr.To(false)},
		},
		Authorization:            kubeletv1beta1.KubeletAuthorization{Mode: kubeletv1beta1.KubeletAuthorizationModeWebhook},
		CgroupDriver:             "cgroupfs",
		CgroupRoot:               "/" + cgroup,
		CgroupsPerQOS:            ptr.To(true),
		FailSwapOn:               ptr.To(false),
		FailCgroupV1:             ptr.To(false),
		ContainerRuntimeEndpoint: "unix://" + containerdSocket,
		ClusterDomain:            clusterDomain,
		ClusterDNS:               []string{node.DNS.String()},
		// Pods with dnsPolicy Default (CoreDNS) resolve through the
		// host's DNS forwarder.
		ResolverConfig: ptr.To(f(nodeResolvConf)),
		// Test clusters live on shared CI disks: evict only when the disk
		// or memory is really full, and never collect images that were
		// loaded by hand and cannot be pulled again.
		EvictionHard: map[string]string{
			"memory.available":  "100Mi",
			"nodefs.available":  "1%",
			"imagefs.available": "1%",
			"nodefs.inodesFree": "1%",
		},
		ImageGCHighThresholdPercent: ptr.To[int32](100),
		ImageGCLowThresholdPercent:  ptr.To[int32](99),
		SerializeImagePulls:         ptr.To(false),
		// Lowering the kubelet's own score needs CAP_SYS_RESOURCE.
		OOMScoreAdj: ptr.To[int32](0),
		// The kubelet computes its node's status this often but sends it
		// only when it changed (or every 5 minutes): a node turns Ready
		// up to 9 s sooner than with the default 10 s, at no idle cost.
		NodeStatusUpdateFrequency: metav1.Duration{Duration: time.Second},
		SyncFrequency:             metav1.Duration{Duration: 10 * time.Second},
		RotateCertificates:        false,
	}
	if files["node/kubelet.yaml"], err = yaml.Marshal(kubelet); err != nil {
		return err
	}

	proxy := kubeproxyv1alpha1.KubeProxyConfiguration{
		TypeMeta:           metav1.TypeMeta{APIVersion: "kubeproxy.config.k8s.io/v1alpha1", Kind: "KubeProxyConfiguration"},
		HostnameOverride:   RealNodeName,
		BindAddress:        node.Network.NodeIP.String(),
		HealthzBindAddress: localhost + ":10256",
		MetricsBindAddress: localhost + ":10249",
		Mode:               "iptables",
		ClusterCIDR:        podSubnet,
		OOMScoreAdj:        ptr.To[int32](0),
		IPTables: kubeproxyv1alpha1.KubeProxyIPTablesConfiguration{
			// NodePorts on 127.0.0.1 need route_localnet, which lets
			// packets to 127.0.0.0/8 cross interfaces: not worth it
			// for test clusters.
			LocalhostNodePorts: ptr.To(false),
			// A Service is forwarded as soon as it exists, not up to a
			// second later (the default, 1s; zero means the default): a
			// pod started right after its Service must reach it on its
			// first try. A test cluster's rules are few.
			MinSyncPeriod: metav1.Duration{Duration: 10 * time.Millisecond},
		},
		// The conntrack table size is the host's, not the namespace's.
		Conntrack: kubeproxyv1alpha1.KubeProxyConntrackConfiguration{MaxPerCore: ptr.To[int32](0)},
	}
	proxy.ClientConnection.Kubeconfig = f("kube-proxy.kubeconfig")
	if files["node/kube-proxy.yaml"], err = yaml.Marshal(proxy); err != nil {
		return err
	}
	for name, data := range files {
		if err := os.WriteFile(f(name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// cniConfig is a bridge with host-local addresses from the pod subnet, and
// portmap for hostPort.
func cniConfig(podSubnet string) map[string]any {
	return map[string]any{
		"cniVersion": "0.4.0",
		"name":       "ephemera",
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      "cni0",
				"isGateway":   true,
				"ipMasq":      false,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":   "host-local",
					"ranges": [][]map[string]string{{{"subnet": podSubnet}}},
					"routes": []map[string]string{{"dst": "0.0.0.0/0"}},
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
}

// nodeComponents returns the supervised processes of the real node:
// containerd starts with the control plane, the kubelet and kube-proxy once
// the API is usable and the images are in.
func nodeComponents(dir string, inst *kube.Installation, node realNode, name string) []component {
	f := func(n string) string { return filepath.Join(dir, n) }
	return []component{
		{
			Name:   containerdComponent,
			Args:   []string{"containerd", "--config=" + f("node/containerd.toml")},
			Health: "unix://" + containerdSocket,
		},
		{
			Name: kubeletComponent,
			Args: []string{
				inst.Bin(kube.Kubelet),
				"--config=" + f("node/kubelet.yaml"),
				"--kubeconfig=" + f("kubelet.kubeconfig"),
				"--hostname-override=" + RealNodeName,
				"--node-ip=" + node.Network.NodeIP.String(),
				"--node-labels=ephemera.dev/cluster=" + name + ",ephemera.dev/node-kind=real",
			},
			Health: "http://" + localhost + ":10248/healthz",
			Stage:  stageAfterAPI,
		},
		{
			Name:   proxyComponent,
			Args:   []string{inst.Bin(kube.Proxy), "--config=" + f("node/kube-proxy.yaml")},
			Health: "http://" + localhost + ":10256/healthz",
			Stage:  stageAfterAPI,
		},
	}
}
