package local

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func TestParseAdvertise(t *testing.T) {
	host := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8"), netip.MustParsePrefix("192.0.2.10/24"), netip.MustParsePrefix("2001:db8::5/64")}
	for _, tc := range []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: "192.0.2.10", want: "192.0.2.10:6443"},
		{in: "192.0.2.10:443", want: "192.0.2.10:443"},
		{in: "[2001:db8::5]:7443", want: "[2001:db8::5]:7443"},
		{in: "192.0.2.11", wantErr: "192.0.2.11 is not an address of this host (it has 192.0.2.10, 2001:db8::5)"},
		{in: "0.0.0.0:6443", wantErr: "other machines cannot reach 0.0.0.0"},
		{in: "127.0.0.1", wantErr: "other machines cannot reach 127.0.0.1"},
		{in: "192.0.2.10:0", wantErr: "port 0"},
		{in: "ci.example:6443", wantErr: "want HOST or HOST:PORT with HOST an IP address of this host"},
		{in: "192.0.2.10:99999", wantErr: "want HOST or HOST:PORT"},
	} {
		got, err := ParseAdvertise(tc.in, host)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseAdvertise(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.wantErr)
			}
		case err != nil || got.String() != tc.want:
			t.Errorf("ParseAdvertise(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestAPIServerName(t *testing.T) {
	addr := netip.MustParseAddr("192.0.2.10")
	if got := apiServerName("pr-42", "ci.example", "sslip.io", addr); got != "pr-42.ci.example" {
		t.Errorf("with a domain: %q, want pr-42.ci.example", got)
	}
	if got := apiServerName("pr-42", "", "", addr); got != "pr-42.192-0-2-10.sslip.io" {
		t.Errorf("without: %q, want pr-42.192-0-2-10.sslip.io", got)
	}
	if got := apiServerName("a", "", "nip.io", netip.MustParseAddr("2001:db8::5")); got != "a.2001-db8--5.nip.io" {
		t.Errorf("IPv6: %q", got)
	}
}

func TestAdvertiseKubeconfig(t *testing.T) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: "https://10.250.0.2:6443", CertificateAuthorityData: []byte("CA")}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "t"}
	cfg.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	cfg.CurrentContext = "c"
	in, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := advertised{Address: netip.MustParseAddrPort("192.0.2.10:6443"), ServerName: "c.ci.example"}
	for _, tc := range []struct {
		resolves           bool
		server, serverName string
	}{
		{false, "https://192.0.2.10:6443", "c.ci.example"},
		{true, "https://c.ci.example:6443", ""},
	} {
		out, err := advertiseKubeconfig(in, a, func(string, netip.Addr) bool { return tc.resolves })
		if err != nil {
			t.Fatal(err)
		}
		got, err := clientcmd.Load(out)
		if err != nil {
			t.Fatal(err)
		}
		c := got.Clusters["c"]
		if c.Server != tc.server || c.TLSServerName != tc.serverName || string(c.CertificateAuthorityData) != "CA" || got.AuthInfos["u"].Token != "t" {
			t.Errorf("resolves=%v: server %q, tls-server-name %q, CA %q; want %q, %q and the cluster's CA and user kept", tc.resolves, c.Server, c.TLSServerName, c.CertificateAuthorityData, tc.server, tc.serverName)
		}
	}
}

func TestAdvertisedBackends(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir()}
	write := func(dir, name, endpoint string, a *advertised) {
		t.Helper()
		st := clusterState{Name: name, Endpoint: endpoint, Advertise: a}
		if err := os.MkdirAll(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := writeJSON(filepath.Join(dir, name, clusterFile), st); err != nil {
			t.Fatal(err)
		}
	}
	addr := netip.MustParseAddrPort("192.0.2.10:6443")
	write(dirs[0], "a", "https://10.250.0.2:6443", &advertised{Address: addr, ServerName: "a.ci.example"})
	write(dirs[0], "plain", "https://127.0.0.1:40000", nil)
	write(dirs[1], "management", "https://127.0.0.1:41000", &advertised{Address: addr, ServerName: "management.ci.example"})
	lookup := advertisedBackends(dirs)
	for name, want := range map[string]string{
		"a.ci.example": "10.250.0.2:6443", "A.CI.EXAMPLE.": "10.250.0.2:6443",
		"management.ci.example": "127.0.0.1:41000", "plain.ci.example": "", "b.ci.example": "",
	} {
		got, ok := lookup(t.Context(), name)
		if got != want || ok != (want != "") {
			t.Errorf("lookup(%q) = %q, %v; want %q", name, got, ok, want)
		}
	}
	// A cluster created after the last read is found without waiting
	// for the cache to expire: unknown names read again (at most every
	// 100 ms).
	write(dirs[0], "b", "https://10.250.0.6:6443", &advertised{Address: addr, ServerName: "b.ci.example"})
	time.Sleep(150 * time.Millisecond)
	if got, ok := lookup(t.Context(), "b.ci.example"); !ok || got != "10.250.0.6:6443" {
		t.Errorf("a new cluster: lookup = %q, %v; want 10.250.0.6:6443", got, ok)
	}
}

func TestReservedName(t *testing.T) {
	for name, want := range map[string]bool{
		"a.ci.test": true, "a.ci.test.": true, "a.CI.EXAMPLE": true, "x.invalid": true, "m.internal": true,
		"a.192-0-2-10.sslip.io": false, "pr-42.ci.example.com": false, "test": true, "example.org": false,
	} {
		if got := reservedName(name); got != want {
			t.Errorf("reservedName(%q) = %v, want %v", name, got, want)
		}
	}
	if resolvesTo("a.ci.test", netip.MustParseAddr("192.0.2.10")) {
		t.Error("a name under .test resolved")
	}
}
