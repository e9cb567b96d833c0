package local

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/ephemera-dev/ephemera/internal/kube"
	"github.com/ephemera-dev/ephemera/internal/pki"
)

// Defaults of a cluster's network.
const (
	defaultServiceSubnet = "10.96.0.0/16"
	defaultPodSubnet     = "10.244.0.0/16"
	clusterDomain        = "cluster.local"
	localhost            = "127.0.0.1"
)

// Identities of the components in their client certificates.
const (
	adminUser     = "ephemera-admin"
	kcmUser       = "system:kube-controller-manager"
	schedulerUser = "system:kube-scheduler"
	kwokUser      = "ephemera:node-simulator"
	mastersGroup  = "system:masters"
	// etcdPeerCN is the only client etcd's peer port accepts.
	etcdPeerCN = "etcd-peer"
	// frontProxyClientCN is the API server's identity when it proxies a
	// request to an extension API server; the only name those accept
	// request headers from.
	frontProxyClientCN = "front-proxy-client"
	frontProxyCAName   = "ephemera-front-proxy-ca"
)

// writePKI creates the cluster's CAs, serving and client certificates and
// the service account signing key under dir/pki, and returns the cluster CA.
// Every cluster gets the API server's client certificate for kubelets (the
// API server's flags name it); one with a real node (nodeIP valid) also
// gets the kubelet's serving certificate.
func writePKI(dir, serviceSubnet string, nodeIP netip.Addr, serverNames []string, now time.Time, validity time.Duration) (*pki.CA, error) {
	pkiPath := filepath.Join(dir, pkiDir)
	if err := os.MkdirAll(pkiPath, 0o700); err != nil {
		return nil, err
	}
	ca, err := pki.NewCA("ephemera-ca", now)
	if err != nil {
		return nil, err
	}
	etcdCA, err := pki.NewCA("ephemera-etcd-ca", now)
	if err != nil {
		return nil, err
	}
	// The front proxy's CA signs only the API server's client certificate
	// for extension API servers: they trust what it says about the user
	// (the request headers) because of it, as kubeadm sets it up.
	frontProxyCA, err := pki.NewCA(frontProxyCAName, now)
	if err != nil {
		return nil, err
	}
	apiIP, err := firstServiceIP(serviceSubnet)
	if err != nil {
		return nil, err
	}
	type issue struct {
		file string
		ca   *pki.CA
		spec pki.CertSpec
	}
	loopback := []net.IP{net.ParseIP(localhost)}
	apiIPs := append(loopback, apiIP)
	if nodeIP.IsValid() {
		apiIPs = append(apiIPs, net.IP(nodeIP.AsSlice()))
	}
	issues := []issue{
		{"apiserver", ca, pki.CertSpec{
			CommonName: "kube-apiserver",
			DNSNames:   append([]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + clusterDomain}, serverNames...),
			IPs:        apiIPs,
			Usage:      pki.ServerAuth,
		}},
		{"etcd-server", etcdCA, pki.CertSpec{CommonName: "etcd", DNSNames: []string{"localhost"}, IPs: loopback, Usage: pki.ServerAuth | pki.ClientAuth}},
		// etcd's peer port serves and accepts only this certificate (see
		// plan), so that nothing else on the loopback reaches raft.
		{"etcd-peer", etcdCA, pki.CertSpec{CommonName: etcdPeerCN, DNSNames: []string{"localhost"}, IPs: loopback, Usage: pki.ServerAuth | pki.ClientAuth}},
		{"apiserver-etcd-client", etcdCA, pki.CertSpec{CommonName: "kube-apiserver-etcd-client", Usage: pki.ClientAuth}},
		{"kube-controller-manager-server", ca, pki.CertSpec{CommonName: "kube-controller-manager", DNSNames: []string{"localhost"}, IPs: loopback, Usage: pki.ServerAuth}},
		{"kube-scheduler-server", ca, pki.CertSpec{CommonName: "kube-scheduler", DNSNames: []string{"localhost"}, IPs: loopback, Usage: pki.ServerAuth}},
		{"apiserver-kubelet-client", ca, pki.CertSpec{CommonName: "kube-apiserver-kubelet-client", Organization: []string{mastersGroup}, Usage: pki.ClientAuth}},
		{"front-proxy-client", frontProxyCA, pki.CertSpec{CommonName: frontProxyClientCN, Usage: pki.ClientAuth}},
	}
	if nodeIP.IsValid() {
		issues = append(issues, issue{"kubelet-server", ca, pki.CertSpec{
			CommonName: RealNodeName,
			DNSNames:   []string{RealNodeName, "localhost"},
			IPs:        []net.IP{net.IP(nodeIP.AsSlice()), net.ParseIP(localhost)},
			Usage:      pki.ServerAuth,
		}})
	}
	files := map[string][]byte{"ca.crt": ca.CertPEM(), "etcd-ca.crt": etcdCA.CertPEM(), "front-proxy-ca.crt": frontProxyCA.CertPEM()}
	// Kept to renew the front proxy's client certificate.
	if files["front-proxy-ca.key"], err = frontProxyCA.KeyPEM(); err != nil {
		return nil, err
	}
	if files["ca.key"], err = ca.KeyPEM(); err != nil {
		return nil, err
	}
	// Kept to renew the etcd certificates (see RenewCertificates).
	if files["etcd-ca.key"], err = etcdCA.KeyPEM(); err != nil {
		return nil, err
	}
	for _, is := range issues {
		is.spec.Validity = validity
		kp, err := is.ca.Issue(is.spec, now)
		if err != nil {
			return nil, err
		}
		files[is.file+".crt"], files[is.file+".key"] = kp.CertPEM, kp.KeyPEM
	}
	if files["sa.key"], files["sa.pub"], err = pki.NewSigningKey(); err != nil {
		return nil, err
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(pkiPath, name), data, 0o600); err != nil {
			return nil, err
		}
	}
	return ca, nil
}

// writeKubeconfigs writes the admin kubeconfig and one per component, each
// with its own client certificate; the kubelet's and kube-proxy's when the
// cluster has a real node.
func writeKubeconfigs(dir string, ca *pki.CA, name, endpoint string, realNode bool, now time.Time, validity time.Duration) error {
	type user struct {
		file string
		cn   string
		orgs []string
	}
	users := []user{
		{kubeconfigFile, adminUser, []string{mastersGroup}},
		{"kube-controller-manager.kubeconfig", kcmUser, []string{mastersGroup}},
		{"kube-scheduler.kubeconfig", schedulerUser, nil},
		{"kwok.kubeconfig", kwokUser, []string{mastersGroup}},
	}
	if realNode {
		users = append(users,
			user{"kubelet.kubeconfig", "system:node:" + RealNodeName, []string{"system:nodes"}},
			user{"kube-proxy.kubeconfig", "system:kube-proxy", nil},
		)
	}
	for _, u := range users {
		kp, err := ca.Issue(pki.CertSpec{CommonName: u.cn, Organization: u.orgs, Usage: pki.ClientAuth, Validity: validity}, now)
		if err != nil {
			return err
		}
		cfg := kubeconfig(name, endpoint, ca.CertPEM(), kp)
		if err := clientcmd.WriteToFile(*cfg, filepath.Join(dir, u.file)); err != nil {
			return fmt.Errorf("write %s: %w", u.file, err)
		}
	}
	return nil
}

// kubeconfig returns a kubeconfig with one context named ephemera-<name>.
func kubeconfig(name, endpoint string, caPEM []byte, kp pki.KeyPair) *clientcmdapi.Config {
	ctxName := "ephemera-" + name
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[ctxName] = &clientcmdapi.Cluster{Server: endpoint, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[ctxName] = &clientcmdapi.AuthInfo{ClientCertificateData: kp.CertPEM, ClientKeyData: kp.KeyPEM}
	cfg.Contexts[ctxName] = &clientcmdapi.Context{Cluster: ctxName, AuthInfo: ctxName}
	cfg.CurrentContext = ctxName
	return cfg
}

// nthServiceIP returns the n-th address of the service subnet, like the
// cluster DNS Service's ClusterIP (the 10th).
func nthServiceIP(subnet string, n int) (netip.Addr, error) {
	prefix, err := netip.ParsePrefix(subnet)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("service subnet %q: %w", subnet, err)
	}
	a := prefix.Masked().Addr()
	for range n {
		a = a.Next()
	}
	if !prefix.Contains(a) {
		return netip.Addr{}, fmt.Errorf("service subnet %s is too small", subnet)
	}
	return a, nil
}

// firstServiceIP returns the ClusterIP of the kubernetes Service: the first
// address of the service subnet.
func firstServiceIP(subnet string) (net.IP, error) {
	prefix, err := netip.ParsePrefix(subnet)
	if err != nil {
		return nil, fmt.Errorf("service subnet %q: %w", subnet, err)
	}
	return net.IP(prefix.Masked().Addr().Next().AsSlice()), nil
}

// unsafeNoFsync is the etcd flag of a cluster that is not durable.
const unsafeNoFsync = "--unsafe-no-fsync=true"

// gcHoliday postpones garbage collection in the control-plane components
// for their start-up (see kube.gcHolidayMain) until 10 s have passed or the
// heap reaches 192 MiB: on 2 cores the API answers about a third sooner.
// Below ~160 MiB the API server's start-up heap hits the limit and the
// collector thrashes (measured: 128 MiB doubles the time). Afterwards they
// collect with GOGC=50, trading some CPU for a smaller idle footprint.
var gcHoliday = []string{"EPHEMERA_GC_HOLIDAY=10s", "EPHEMERA_GC_HOLIDAY_LIMIT_MIB=192", "GOGC=50"}

// plan returns the supervised components of a cluster: their command lines,
// health URLs and start order.
// The API server listens on apiAddr (the node's address in a real-node
// cluster), everything else on the loopback address.
//
// Unless durable, etcd does not sync to disk: a throwaway cluster needs no
// durability, and fsync is most of a write's latency.
func plan(dir string, inst *kube.Installation, ps ports, apiAddr, serviceSubnet, podSubnet string, durable bool) []component {
	p := func(name string) string { return filepath.Join(dir, pkiDir, name) }
	f := func(name string) string { return filepath.Join(dir, name) }
	addr := func(port int) string { return net.JoinHostPort(localhost, strconv.Itoa(port)) }
	etcdURL := "https://" + addr(ps.EtcdClient)
	// A single member has no peers, but etcd listens on a peer port
	// anyway, and that port is reachable by everything on the loopback
	// (the host's, or a real node's network namespace with hostNetwork
	// pods): it is TLS, and only the member's own peer certificate gets in.
	peerURL := "https://" + addr(ps.EtcdPeer)

	etcd := component{
		Name: kube.Etcd,
		Args: []string{
			inst.Bin(kube.Etcd),
			"--name=default",
			"--data-dir=" + f("etcd"),
			"--listen-client-urls=" + etcdURL,
			"--advertise-client-urls=" + etcdURL,
			"--listen-peer-urls=" + peerURL,
			"--initial-advertise-peer-urls=" + peerURL,
			"--initial-cluster=default=" + peerURL,
			"--cert-file=" + p("etcd-server.crt"),
			"--key-file=" + p("etcd-server.key"),
			"--trusted-ca-file=" + p("etcd-ca.crt"),
			"--client-cert-auth=true",
			"--peer-cert-file=" + p("etcd-peer.crt"),
			"--peer-key-file=" + p("etcd-peer.key"),
			"--peer-trusted-ca-file=" + p("etcd-ca.crt"),
			"--peer-client-cert-auth=true",
			"--peer-cert-allowed-cn=" + etcdPeerCN,
			// A single member elects itself: with the default 1s election
			// timeout that alone delays the first write by about a second.
			"--heartbeat-interval=20",
			"--election-timeout=200",
			"--log-level=warn",
		},
	}
	if !durable {
		etcd.Args = append(etcd.Args, unsafeNoFsync)
	}
	apiserver := component{
		Name: kube.APIServer,
		Args: []string{
			inst.Bin(kube.APIServer),
			"--bind-address=" + apiAddr,
			"--advertise-address=" + apiAddr,
			"--secure-port=" + strconv.Itoa(ps.APIServer),
			"--etcd-servers=" + etcdURL,
			"--etcd-cafile=" + p("etcd-ca.crt"),
			"--etcd-certfile=" + p("apiserver-etcd-client.crt"),
			"--etcd-keyfile=" + p("apiserver-etcd-client.key"),
			"--tls-cert-file=" + p("apiserver.crt"),
			"--tls-private-key-file=" + p("apiserver.key"),
			"--client-ca-file=" + p("ca.crt"),
			"--service-account-issuer=https://kubernetes.default.svc." + clusterDomain,
			"--service-account-key-file=" + p("sa.pub"),
			"--service-account-signing-key-file=" + p("sa.key"),
			"--service-cluster-ip-range=" + serviceSubnet,
			"--authorization-mode=Node,RBAC",
			"--allow-privileged=true",
			"--profiling=false",
			// Logs, exec and port-forward go to the kubelet at its
			// InternalIP, which it serves with a certificate of the
			// cluster CA.
			"--kubelet-client-certificate=" + p("apiserver-kubelet-client.crt"),
			"--kubelet-client-key=" + p("apiserver-kubelet-client.key"),
			"--kubelet-certificate-authority=" + p("ca.crt"),
			"--kubelet-preferred-address-types=InternalIP",
			// Aggregation, as kubeadm sets it up: the API server proxies
			// requests for APIServices to extension API servers with the
			// front proxy's client certificate and the user in headers,
			// and publishes the CA and header names in
			// kube-system/extension-apiserver-authentication, where
			// extension API servers (k8s.io/apiserver) read them.
			"--requestheader-client-ca-file=" + p("front-proxy-ca.crt"),
			"--requestheader-allowed-names=" + frontProxyClientCN,
			"--requestheader-username-headers=X-Remote-User",
			"--requestheader-group-headers=X-Remote-Group",
			"--requestheader-extra-headers-prefix=X-Remote-Extra-",
			"--proxy-client-cert-file=" + p("front-proxy-client.crt"),
			"--proxy-client-key-file=" + p("front-proxy-client.key"),
		},
		Env:    gcHoliday,
		Health: "https://" + net.JoinHostPort(apiAddr, strconv.Itoa(ps.APIServer)) + "/readyz",
	}
	kcm := component{
		Name: kube.ControllerManager,
		Args: []string{
			inst.Bin(kube.ControllerManager),
			"--kubeconfig=" + f("kube-controller-manager.kubeconfig"),
			"--authentication-kubeconfig=" + f("kube-controller-manager.kubeconfig"),
			"--authorization-kubeconfig=" + f("kube-controller-manager.kubeconfig"),
			"--bind-address=" + localhost,
			"--secure-port=" + strconv.Itoa(ps.ControllerManager),
			"--tls-cert-file=" + p("kube-controller-manager-server.crt"),
			"--tls-private-key-file=" + p("kube-controller-manager-server.key"),
			"--client-ca-file=" + p("ca.crt"),
			"--root-ca-file=" + p("ca.crt"),
			"--service-account-private-key-file=" + p("sa.key"),
			"--cluster-signing-cert-file=" + p("ca.crt"),
			"--cluster-signing-key-file=" + p("ca.key"),
			// Each controller with its own service account means one
			// ServiceAccount and TokenRequest round trip per controller,
			// serially, before any controller starts: about 4 s on 2 cores.
			// The controller manager's own identity (in system:masters)
			// runs them all instead.
			"--use-service-account-credentials=false",
			// The client and request-header CAs come from flags; looking
			// them up in kube-system fails until the API server has
			// published them and makes the process exit.
			"--authentication-skip-lookup=true",
			"--requestheader-client-ca-file=" + p("front-proxy-ca.crt"),
			"--requestheader-allowed-names=" + frontProxyClientCN,
			"--service-cluster-ip-range=" + serviceSubnet,
			"--cluster-cidr=" + podSubnet,
			"--allocate-node-cidrs=true",
			// One instance per cluster: no election to wait for.
			"--leader-elect=false",
			"--profiling=false",
		},
		Env:    gcHoliday,
		Health: "https://" + addr(ps.ControllerManager) + "/healthz",
		Stage:  stageAfterAPI,
	}
	scheduler := component{
		Name: kube.Scheduler,
		Args: []string{
			inst.Bin(kube.Scheduler),
			"--kubeconfig=" + f("kube-scheduler.kubeconfig"),
			"--authentication-kubeconfig=" + f("kube-scheduler.kubeconfig"),
			"--authorization-kubeconfig=" + f("kube-scheduler.kubeconfig"),
			"--authentication-skip-lookup=true",
			"--client-ca-file=" + p("ca.crt"),
			"--requestheader-client-ca-file=" + p("front-proxy-ca.crt"),
			"--requestheader-allowed-names=" + frontProxyClientCN,
			"--bind-address=" + localhost,
			"--secure-port=" + strconv.Itoa(ps.Scheduler),
			"--tls-cert-file=" + p("kube-scheduler-server.crt"),
			"--tls-private-key-file=" + p("kube-scheduler-server.key"),
			"--leader-elect=false",
			"--profiling=false",
		},
		Env:    gcHoliday,
		Health: "https://" + addr(ps.Scheduler) + "/healthz",
		Stage:  stageAfterAPI,
	}
	kwok := component{
		Name: kube.Kwok,
		Args: []string{
			inst.Bin(kube.Kwok),
			"--kubeconfig=" + f("kwok.kubeconfig"),
			// The default stages, as kwokctl uses them; an explicit config
			// also keeps ~/.kwok/kwok.yaml out.
			"--config=" + inst.KwokStages(),
			"--node-lease-duration-seconds=40",
			"--manage-all-nodes=false",
			"--manage-nodes-with-annotation-selector=" + simulatedNodeAnnotation + "=fake",
			"--manage-nodes-with-label-selector=",
			"--disregard-status-with-annotation-selector=kwok.x-k8s.io/status=custom",
			"--disregard-status-with-label-selector=",
			"--server-address=" + addr(ps.Kwok),
			"--cidr=" + podSubnet,
			"--node-ip=" + localhost,
		},
		Health: "http://" + addr(ps.Kwok) + "/healthz",
		Stage:  stageAfterAPI,
	}
	return []component{etcd, apiserver, kcm, scheduler, kwok}
}
