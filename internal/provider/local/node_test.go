package local

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	kubeproxyv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"sigs.k8s.io/yaml"
)

func TestFreeSubnet(t *testing.T) {
	pfx := netip.MustParsePrefix
	tests := []struct {
		name  string
		rng   string
		used  []netip.Prefix
		want  string
		error string
	}{
		{name: "empty host", rng: "10.250.0.0/16", want: "10.250.0.0/30"},
		{name: "first taken", rng: "10.250.0.0/16", used: []netip.Prefix{pfx("10.250.0.1/30")}, want: "10.250.0.4/30"},
		{name: "a host /24 covers 64", rng: "10.250.0.0/16", used: []netip.Prefix{pfx("10.250.0.7/24")}, want: "10.250.1.0/30"},
		{name: "unrelated addresses", rng: "10.250.0.0/16", used: []netip.Prefix{pfx("127.0.0.1/8"), pfx("192.0.2.2/24")}, want: "10.250.0.0/30"},
		{name: "a /30 range that is free", rng: "10.9.9.8/30", want: "10.9.9.8/30"},
		{name: "full", rng: "10.9.9.8/29", used: []netip.Prefix{pfx("10.9.9.9/30"), pfx("10.9.9.13/30")}, error: "no free /30 left in the host network 10.9.9.8/29"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := freeSubnet(pfx(tt.rng), tt.used)
			if tt.error != "" {
				if err == nil || !strings.Contains(err.Error(), tt.error) {
					t.Fatalf("freeSubnet = %v, %v; want error %q", got, err, tt.error)
				}
				return
			}
			if err != nil || got != pfx(tt.want) {
				t.Fatalf("freeSubnet = %v, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestCheckSubnetFree(t *testing.T) {
	err := checkSubnetFree(netip.MustParsePrefix("127.0.0.0/30"))
	for _, want := range []string{"127.0.0.0/30", "host interface lo", "127.0.0.1/8", "delete the cluster and create it again"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("checkSubnetFree(127.0.0.0/30) = %v, want an error naming %q", err, want)
		}
	}
	// TEST-NET-2: no host has it.
	if err := checkSubnetFree(netip.MustParsePrefix("198.51.100.0/30")); err != nil {
		t.Errorf("checkSubnetFree(198.51.100.0/30) = %v", err)
	}
}

func TestParseHostNetwork(t *testing.T) {
	for in, want := range map[string]string{"10.250.0.0/16": "10.250.0.0/16", "10.250.3.7/24": "10.250.3.0/24", "172.31.0.0/30": "172.31.0.0/30"} {
		if got, err := ParseHostNetwork(in); err != nil || got.String() != want {
			t.Errorf("ParseHostNetwork(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "10.250.0.0", "10.250.0.0/31", "fd00::/64", "garbage"} {
		if _, err := ParseHostNetwork(in); err == nil || !strings.Contains(err.Error(), DefaultHostNetwork) {
			t.Errorf("ParseHostNetwork(%q) = %v, want an error showing a valid example", in, err)
		}
	}
}

func TestNamesFor(t *testing.T) {
	a, b := namesFor("/state/clusters/a"), namesFor("/other/clusters/a")
	if a == b {
		t.Errorf("two state dirs with the same cluster name share host names %+v", a)
	}
	if a != namesFor("/state/clusters/a") {
		t.Error("names are not stable")
	}
	if len(a.Veth) > 15 {
		t.Errorf("veth name %q is longer than IFNAMSIZ-1", a.Veth)
	}
}

func TestImportedNames(t *testing.T) {
	out := "unpacking localhost/ephemera/pause:3.10 (sha256:8597d68f)...done\n" +
		"unpacking docker.io/library/hello:v1 (sha256:aaaa)...done\n" +
		"some other line\n"
	want := []string{"localhost/ephemera/pause:3.10", "docker.io/library/hello:v1"}
	if diff := cmp.Diff(want, importedNames(out)); diff != "" {
		t.Errorf("importedNames (-want +got):\n%s", diff)
	}
	if got := importedNames(""); len(got) != 0 {
		t.Errorf("importedNames(\"\") = %v", got)
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{`/sys/fs/cgroup/cpu`: "/sys/fs/cgroup/cpu", `/mnt/a\040b`: "/mnt/a b", `/x\134y`: `/x\y`} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNthServiceIP(t *testing.T) {
	if got, err := nthServiceIP("10.96.0.0/16", 10); err != nil || got.String() != "10.96.0.10" {
		t.Errorf("nthServiceIP = %v, %v; want 10.96.0.10", got, err)
	}
	if _, err := nthServiceIP("10.96.0.0/29", 10); err == nil {
		t.Error("nthServiceIP past the end of a /29 succeeded")
	}
}

// TestWriteNodeConfig reads the written configuration back with the
// components' own types, strictly: a misspelt field fails.
func TestWriteNodeConfig(t *testing.T) {
	dir := t.TempDir()
	node := realNode{
		Network: nodeNetwork{hostNames: namesFor(dir), NodeIP: netip.MustParseAddr("10.250.0.2")},
		DNS:     netip.MustParseAddr("10.96.0.10"),
	}
	if err := writeNodeConfig(dir, node, "ephemera-abc", "10.244.0.0/16"); err != nil {
		t.Fatal(err)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var kc kubeletv1beta1.KubeletConfiguration
	if err := yaml.UnmarshalStrict(read("node/kubelet.yaml"), &kc); err != nil {
		t.Fatalf("kubelet.yaml: %v", err)
	}
	if kc.CgroupRoot != "/ephemera-abc" || kc.Address != "10.250.0.2" || kc.ClusterDNS[0] != "10.96.0.10" || kc.CgroupDriver != "cgroupfs" || *kc.FailSwapOn {
		t.Errorf("kubelet config = root %q address %q dns %v driver %q", kc.CgroupRoot, kc.Address, kc.ClusterDNS, kc.CgroupDriver)
	}
	if kc.FailCgroupV1 == nil || *kc.FailCgroupV1 {
		t.Error("kubelet must run on cgroup v1 hosts: failCgroupV1 must be false")
	}
	var pc kubeproxyv1alpha1.KubeProxyConfiguration
	if err := yaml.UnmarshalStrict(read("node/kube-proxy.yaml"), &pc); err != nil {
		t.Fatalf("kube-proxy.yaml: %v", err)
	}
	if pc.Mode != "iptables" || pc.ClusterCIDR != "10.244.0.0/16" || *pc.Conntrack.MaxPerCore != 0 || pc.HostnameOverride != RealNodeName {
		t.Errorf("kube-proxy config = %+v", pc)
	}
	var cni struct {
		Plugins []struct {
			Type string `json:"type"`
			IPAM struct {
				Ranges [][]map[string]string `json:"ranges"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(read(filepath.Join(cniConfDir, "10-ephemera.conflist")), &cni); err != nil {
		t.Fatal(err)
	}
	if len(cni.Plugins) != 2 || cni.Plugins[0].Type != "bridge" || cni.Plugins[0].IPAM.Ranges[0][0]["subnet"] != "10.244.0.0/16" || cni.Plugins[1].Type != "portmap" {
		t.Errorf("CNI config = %+v", cni)
	}
	containerd := string(read("node/containerd.toml"))
	for _, want := range []string{`sandbox_image = "localhost/ephemera/pause:`, `conf_dir = "` + filepath.Join(dir, cniConfDir) + `"`, `address = "/run/containerd/containerd.sock"`, "restrict_oom_score_adj = "} {
		if !strings.Contains(containerd, want) {
			t.Errorf("containerd.toml lacks %q:\n%s", want, containerd)
		}
	}
}
