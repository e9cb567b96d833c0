package local

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	osexec "os/exec"
	"strings"

	"github.com/ephemera-dev/ephemera/internal/exec"
)

// A real-node cluster's traffic crosses the host: egress leaves through the
// host's own interfaces, masqueraded behind the host, and the host's
// forwarding policy must let it through (Docker hosts set it to DROP). The
// rules live in chains of the cluster's own, named after its dir like its
// veth (see namesFor), so a delete finds them even when the create died
// before writing anything down. They are written with iptables-restore, in
// one atomic step per backend, into the tables where the host's own rules
// are evaluated: a rule in a separate nftables table cannot override
// another table's DROP.

// firewallComment marks the jumps into a cluster's chains.
const firewallComment = "ephemera"

// Parent chains the cluster's chains are jumped to from. Docker hosts keep
// DOCKER-USER for users' rules, evaluated before Docker's own DROPs.
const (
	forwardChain = "FORWARD"
	dockerUser   = "DOCKER-USER"
)

// firewallChains are the chains of one cluster.
type firewallChains struct {
	// Forward filters what the cluster sends through the host.
	Forward string
	// Input accepts what the cluster sends to the host end of its link
	// (ephemera's DNS forwarder, the registry cache).
	Input string
	// Masquerade, in the nat table, hides the cluster behind the host.
	Masquerade string
}

func chainsFor(names hostNames) firewallChains {
	id := strings.TrimPrefix(names.Veth, "eph-")
	c := "EPHEMERA-" + id
	return firewallChains{Forward: c, Input: c + "-IN", Masquerade: c}
}

// firewallPlan is what a cluster needs on the host.
type firewallPlan struct {
	// Name is the cluster's name, in the rules' comments.
	Name    string
	Network nodeNetwork
	// ReachClusters lets the cluster open connections to other clusters
	// (a server's management plane, whose runner pods reach the clusters'
	// API servers and ingress). Other clusters never reach each other.
	ReachClusters bool
	// Internal are the cluster's service and pod subnets, which its
	// traffic never leaves the host for.
	Internal []netip.Prefix
}

// restoreScript returns the iptables-restore input (for --noflush) that
// creates the cluster's chains and jumps to them from forwardParent,
// INPUT and POSTROUTING. It assumes no jump exists yet (see
// removalScript).
func restoreScript(p firewallPlan, forwardParent string) string {
	ch := chainsFor(p.Network.hostNames)
	veth, subnet := p.Network.Veth, p.Network.Subnet.String()
	comment := func(what string) string {
		return fmt.Sprintf("-m comment --comment %q", "ephemera "+p.Name+": "+what)
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("*filter")
	w(":%s - [0:0]", ch.Forward)
	w(":%s - [0:0]", ch.Input)
	w("-A %s -o %s -m conntrack --ctstate RELATED,ESTABLISHED %s -j ACCEPT", ch.Forward, veth, comment("replies"))
	for _, subnet := range p.Internal {
		// Before kube-proxy forwards a new Service, its ClusterIP is
		// routed out of the namespace: refuse it here, never leak it.
		w("-A %s -i %s -d %s %s -j REJECT --reject-with icmp-net-unreachable", ch.Forward, veth, subnet, comment("the cluster's own subnets stay inside"))
	}
	if !p.ReachClusters {
		w("-A %s -i %s -o eph-+ %s -j DROP", ch.Forward, veth, comment("clusters never reach each other"))
	}
	w("-A %s -i %s %s -j ACCEPT", ch.Forward, veth, comment("egress"))
	w("-A %s -i %s -d %s %s -j ACCEPT", ch.Input, veth, p.Network.HostIP, comment("ephemera's services on the host"))
	w("-I %s 1 -m comment --comment %s -j %s", forwardParent, firewallComment, ch.Forward)
	w("-I INPUT 1 -m comment --comment %s -j %s", firewallComment, ch.Input)
	w("COMMIT")
	w("*nat")
	w(":%s - [0:0]", ch.Masquerade)
	w("-A %s -s %s ! -o eph-+ %s -j MASQUERADE", ch.Masquerade, subnet, comment("egress behind the host"))
	w("-I POSTROUTING 1 -m comment --comment %s -j %s", firewallComment, ch.Masquerade)
	w("COMMIT")
	return b.String()
}

// removalScript returns the iptables-restore input (for --noflush) that
// deletes every jump to the cluster's chains and the chains themselves, as
// far as save (iptables-save output) shows them; "" when there is nothing.
func removalScript(save string, ch firewallChains) string {
	ours := map[string]bool{ch.Forward: true, ch.Input: true, ch.Masquerade: true}
	var b strings.Builder
	var table string
	var dels, chains []string
	flush := func() {
		if table != "" && (len(dels) > 0 || len(chains) > 0) {
			b.WriteString("*" + table + "\n")
			for _, d := range dels {
				b.WriteString(d + "\n")
			}
			for _, c := range chains {
				b.WriteString("-F " + c + "\n")
			}
			for _, c := range chains {
				b.WriteString("-X " + c + "\n")
			}
			b.WriteString("COMMIT\n")
		}
		dels, chains = nil, nil
	}
	sc := bufio.NewScanner(strings.NewReader(save))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "*"):
			flush()
			table = line[1:]
		case strings.HasPrefix(line, ":"):
			if name, _, _ := strings.Cut(line[1:], " "); ours[name] {
				chains = append(chains, name)
			}
		case strings.HasPrefix(line, "-A "):
			f := strings.Fields(line)
			if len(f) < 2 || ours[f[1]] {
				continue // our chains' own rules go with -F
			}
			if jumpsTo(f, ours) {
				dels = append(dels, "-D"+line[2:])
			}
		case line == "COMMIT":
			flush()
			table = ""
		}
	}
	return b.String()
}

func jumpsTo(fields []string, chains map[string]bool) bool {
	for i := 0; i+1 < len(fields); i++ {
		if (fields[i] == "-j" || fields[i] == "-g") && chains[fields[i+1]] {
			return true
		}
	}
	return false
}

// firewallBackend is one iptables implementation of the host.
type firewallBackend struct {
	// Restore and Save are its iptables-restore and iptables-save.
	Restore, Save string
}

var (
	nftBackend    = firewallBackend{Restore: "iptables-nft-restore", Save: "iptables-nft-save"}
	legacyBackend = firewallBackend{Restore: "iptables-legacy-restore", Save: "iptables-legacy-save"}
	plainBackend  = firewallBackend{Restore: "iptables-restore", Save: "iptables-save"}
)

// hostBackends returns the backends whose rules the host evaluates: the
// one `iptables` uses, and iptables-legacy too when it holds tables (Docker
// on a legacy host, say). Both run when both hold rules, and a DROP in
// either drops, so the cluster's rules go into each.
func hostBackends(ctx context.Context) []firewallBackend {
	if !onPath(nftBackend.Restore) && !onPath(legacyBackend.Restore) {
		return []firewallBackend{plainBackend}
	}
	out, _ := exec.Command(ctx, "iptables", "-V").Output()
	return chooseBackends(string(out), legacyTables(), onPath(nftBackend.Restore), onPath(legacyBackend.Restore))
}

// chooseBackends is hostBackends' decision: version is `iptables -V`,
// legacy the tables iptables-legacy holds in the kernel.
func chooseBackends(version string, legacy []string, haveNft, haveLegacy bool) []firewallBackend {
	var out []firewallBackend
	switch {
	case strings.Contains(version, "nf_tables") && haveNft:
		out = append(out, nftBackend)
	case strings.Contains(version, "legacy") && haveLegacy:
		return []firewallBackend{legacyBackend}
	default:
		return []firewallBackend{plainBackend}
	}
	if haveLegacy && len(legacy) > 0 {
		out = append(out, legacyBackend)
	}
	return out
}

// legacyTables lists the tables iptables-legacy holds in the kernel,
// without loading its modules (listing with iptables-legacy would).
func legacyTables() []string {
	b, err := os.ReadFile("/proc/net/ip_tables_names")
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))
}

func onPath(cmd string) bool {
	_, err := osexec.LookPath(cmd)
	return err == nil
}

// setupHostFirewall writes the cluster's rules into every backend of the
// host, replacing any left by an earlier run, and turns on the host's
// forwarding (left on when the cluster goes, as Docker does).
func setupHostFirewall(ctx context.Context, p firewallPlan) error {
	if err := enableForwarding(); err != nil {
		return err
	}
	for _, be := range hostBackends(ctx) {
		if err := removeChains(ctx, be, chainsFor(p.Network.hostNames)); err != nil {
			return err
		}
		save, err := exec.Command(ctx, be.Save, "-t", "filter").Output()
		if err != nil {
			return fmt.Errorf("read the host's firewall: %w", err)
		}
		parent := forwardChain
		if strings.Contains(string(save), "\n:"+dockerUser+" ") {
			parent = dockerUser
		}
		cmd := exec.Command(ctx, be.Restore, "--noflush", "--wait")
		cmd.Stdin = strings.NewReader(restoreScript(p, parent))
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("add the cluster's firewall rules with %s: %w", be.Restore, err)
		}
	}
	return nil
}

// teardownHostFirewall removes the cluster's chains and the jumps to them
// from every backend that has them.
func teardownHostFirewall(ctx context.Context, names hostNames) error {
	var backends []firewallBackend
	if onPath(nftBackend.Restore) {
		backends = append(backends, nftBackend)
	}
	if onPath(legacyBackend.Restore) && len(legacyTables()) > 0 {
		backends = append(backends, legacyBackend)
	}
	if len(backends) == 0 && onPath(plainBackend.Restore) {
		backends = append(backends, plainBackend)
	}
	for _, be := range backends {
		if err := removeChains(ctx, be, chainsFor(names)); err != nil {
			return err
		}
	}
	return nil
}

func removeChains(ctx context.Context, be firewallBackend, ch firewallChains) error {
	var save strings.Builder
	for _, table := range []string{"filter", "nat"} {
		out, err := exec.Command(ctx, be.Save, "-t", table).Output()
		if err != nil {
			return fmt.Errorf("read the host's firewall: %w", err)
		}
		save.Write(out)
	}
	script := removalScript(save.String(), ch)
	if script == "" {
		return nil
	}
	cmd := exec.Command(ctx, be.Restore, "--noflush", "--wait")
	cmd.Stdin = strings.NewReader(script)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("remove the cluster's firewall rules with %s: %w", be.Restore, err)
	}
	return nil
}

// ipForward is the host's IPv4 forwarding switch.
const ipForward = "/proc/sys/net/ipv4/ip_forward"

// enableForwarding turns on the host's IPv4 forwarding if it is off.
func enableForwarding() error {
	b, err := os.ReadFile(ipForward)
	if err != nil {
		return fmt.Errorf("read %s: %w", ipForward, err)
	}
	if strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	if err := os.WriteFile(ipForward, []byte("1"), 0o644); err != nil {
		return fmt.Errorf("turn on the host's IPv4 forwarding (%s), which clusters' egress needs: %w", ipForward, err)
	}
	return nil
}
