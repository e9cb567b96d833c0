// Package cluster is the command that creates a cluster.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/addons"
	"github.com/ephemera-dev/ephemera/internal/cli/clusterfile"
	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/kube"
	"github.com/ephemera-dev/ephemera/internal/lifecycle"
	"github.com/ephemera-dev/ephemera/internal/provider/local"
	"github.com/ephemera-dev/ephemera/internal/provider/local/portproxy"
)

type options struct {
	file               string
	realNodes          int32
	simulatedNodes     int32
	kubernetesVersion  string
	wait               time.Duration
	retain             bool
	ports              []string
	dnsUpstream        []string
	domain             string
	insecureRegistries []string
	labels             []string
}

// NewCommand returns the create cluster command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &options{}
	cmd := &cobra.Command{
		Use:   "cluster [NAME]",
		Short: "Create a local cluster and wait until it is usable",
		Long: `Create a cluster: a real Kubernetes control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler) running as local processes, with
nodes of two kinds:

  real       a kubelet with containerd, runc, CNI and kube-proxy, where pods
             run for real, with cluster DNS (CoreDNS). Needs root and the
             packages containerd, runc, containernetworking-plugins,
             iptables and conntrack. At most one per cluster.
  simulated  Node objects kept Ready by a simulator (kwok): pods are
             scheduled and reported Running without running anything.
             Cheap (0 to 1000), and needs no root.

With no node flags a cluster has one real node. A cluster with a real node
lives in its own network namespace, joined to the host by a veth pair whose
addresses come from --host-network; its API server listens there and the
kubeconfig points there. Its pods and containerd reach whatever the host
reaches (masqueraded behind the host), and resolve external names through a
DNS forwarder on the host's side of the link (--dns-upstream overrides the
host's resolvers). Clusters cannot reach each other.

A real node pulls images through the host's registry cache, started by the
first such cluster and shared by all of them: docker.io, registry.k8s.io,
ghcr.io, quay.io, gcr.io and the registries added with 'ephemera registry
configure --registry-mirror' are fetched once per host and served from the
cache afterwards (from the registry itself while the cache is down); other
registries are pulled directly. Images pushed with 'ephemera push image' are
pulled by their localhost:5001/NAME:TAG name, on the host and in every
cluster. --insecure-registry HOST:PORT allows a plain-HTTP registry. 'ephemera
load image' imports an archive into one cluster. See docs/registry.md.

Services of type LoadBalancer get addresses from the cluster's range (a /28
of --lb-network) within about a second, reachable from the host. The first,
the ingress address, goes to the first LoadBalancer Service (or the one
annotated ephemera.dev/ingress: "true"); its domain is ADDRESS.sslip.io, or
NAME.DOMAIN with --domain. --port maps a host port onto it, as k3d's
--port 8080:80@loadbalancer does. 'ephemera get clusters -o wide' shows both.
In a cluster of simulated nodes only, LoadBalancer Services get an address of
its range too, in their status only (nothing is routed there), so that waits
on them (helm --wait) end.

--advertise-address HOST[:PORT] makes the API server reachable from other
machines (a CI runner elsewhere) on that address of this host: every cluster
given the same address shares its one TLS port, routed by the server name
NAME.DOMAIN (with --domain) or NAME.A-B-C-D.sslip.io, and TLS passes through
to the cluster, so its kubeconfig verifies the cluster's own CA and works for
that cluster alone. The kubeconfig names the address, with the server name as
tls-server-name unless that name resolves to the address.

The command returns once the API answers and, within --wait, every node is
Ready and pods can be created. The cluster keeps running after the command
exits; remove it with 'ephemera delete cluster NAME'. If creating fails or is
interrupted (Ctrl-C), the half-created cluster is deleted unless --retain.

A file's spec.addons are phases of manifests and Helm charts installed once
the cluster is ready, in order, each phase waited on until what it installed
is ready (within its timeout, default 10m); the command returns after the
last one, printing each phase with its duration, and a phase that fails
fails the create. What they name is checked before anything is created;
relative paths are relative to the file's directory. Their Go templates see
{{ .Name }}, {{ .Ingress.Address }}, {{ .Ingress.Domain }},
{{ .KubernetesVersion }} and {{ .Labels.KEY }} (--label KEY=VALUE). See
'ephemera addons apply --help' and docs/addons.md.

NAME must be a DNS-1123 label (lower-case letters, digits and '-', at most 40
characters). With -f, the file is a ClusterTemplate (apiVersion
ephemera.dev/v1alpha1); NAME defaults to its metadata.name, and flags override
its spec. A cluster file looks like:

  apiVersion: ephemera.dev/v1alpha1
  kind: ClusterTemplate
  metadata:
    name: demo
  spec:
    kubernetesVersion: v1.36.3     # optional; see 'ephemera kube list'
    nodes:
      real: 1                      # 0 or 1; default 1 if no count is set
      simulated: 3                 # 0 to 1000, default 0
    network:                       # optional
      serviceSubnet: 10.96.0.0/16
      podSubnet: 10.244.0.0/16
      dnsUpstream: [10.0.0.53]     # default: the host's resolvers
      domain: ci.example           # *.demo.ci.example -> ingress address
      ports:                       # like --port 8080:80
      - {hostPort: 8080, port: 80}
      - {address: 0.0.0.0, hostPort: 2222, port: 22, protocol: TCP}
    addons:                        # optional; phases, in order
    - name: operators
      timeout: 5m                  # default 10m
      manifests:
      - path: ./crds/              # file, dir or URL; or inline: YAML
      charts:
      - name: cert-manager         # release name
        chart: oci://registry.example/charts/cert-manager   # or a dir, .tgz, or a name with repo:
        version: v1.21.2
        namespace: cert-manager
        createNamespace: true
        values: {crds: {enabled: true}}
    - name: apps
      manifests:
      - inline: |
          apiVersion: v1
          kind: ConfigMap
          metadata: {name: ingress}
          data: {host: "web.{{ .Ingress.Domain }}"}`,
		Example: `  ephemera create cluster app                 # one real node
  ephemera create cluster api --simulated-nodes 3   # simulated nodes only, no root needed
  ephemera create cluster mix --real-nodes 1 --simulated-nodes 100
  ephemera create cluster old --kubernetes-version v1.35.4
  ephemera create cluster -f cluster.yaml
  ephemera create cluster fast --wait 0   # return as soon as the API answers
  ephemera create cluster web --port 8080:80 --port 0.0.0.0:2222:22   # host ports onto the ingress address
  ephemera create cluster pr-42 --domain ci.example   # *.pr-42.ci.example resolves to its ingress address
  ephemera create cluster shared --advertise-address 192.0.2.10   # reachable from other machines on 192.0.2.10:6443
  ephemera create cluster lab --insecure-registry 10.0.0.5:5000   # pull from a plain-HTTP registry
  ephemera create cluster pr-42 -f web.yaml --label pr=42   # with the file's addons; {{ .Labels.pr }} is 42`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			spec, name, err := resolveSpec(cmd, e, opts, name)
			if err != nil {
				return err
			}
			return run(cmd.Context(), e, opts, name, spec)
		},
	}
	cmd.Flags().StringVarP(&opts.file, "file", "f", "", "ClusterTemplate YAML file describing the cluster (- for stdin)")
	cmd.Flags().Int32Var(&opts.realNodes, "real-nodes", v1alpha1.DefaultRealNodes, "number of real nodes (0 or 1; default 1 unless --simulated-nodes is given)")
	cmd.Flags().Int32Var(&opts.simulatedNodes, "simulated-nodes", 0, "number of simulated nodes (0 to 1000)")
	cmd.Flags().StringVar(&e.HostNetwork, "host-network", "", "host-side range real-node clusters take a /30 from (env "+local.HostNetworkEnv+", default "+local.DefaultHostNetwork+")")
	cmd.Flags().StringVar(&opts.kubernetesVersion, "kubernetes-version", "", fmt.Sprintf("Kubernetes release (default %s; see 'ephemera kube list')", kube.DefaultVersion))
	cmd.Flags().DurationVar(&opts.wait, "wait", 60*time.Second, "how long to wait for nodes Ready and pods creatable after the API answers (0 returns at once)")
	cmd.Flags().BoolVar(&opts.retain, "retain", false, "keep the cluster if creating it fails, for debugging")
	cmd.Flags().StringArrayVar(&opts.ports, "port", nil, "forward a host port to a port of the cluster's ingress address: [ADDR:]HOSTPORT:PORT[/tcp|/udp] (repeatable; ADDR defaults to 127.0.0.1, HOSTPORT 0 picks a free one)")
	cmd.Flags().StringSliceVar(&opts.dnsUpstream, "dns-upstream", nil, "resolvers the cluster's DNS forwards external names to, ADDR[:PORT] (repeatable; env "+local.DNSUpstreamEnv+"; default: the host's, from /etc/resolv.conf)")
	cmd.Flags().StringArrayVar(&opts.insecureRegistries, "insecure-registry", nil, "let the cluster pull from HOST:PORT over plain HTTP, directly or through the host's registry cache (repeatable; every other registry must be HTTPS)")
	cmd.Flags().StringVar(&opts.domain, "domain", "", "make *.NAME.DOMAIN resolve to the cluster's ingress address through ephemera's DNS forwarder (default ingress domain: ADDRESS.sslip.io)")
	cmd.Flags().StringVar(&e.LBNetwork, "lb-network", "", "range clusters take a /28 of LoadBalancer addresses from, routed into real-node clusters, in Services' status only for simulated-node ones (env "+local.LBNetworkEnv+", default "+local.DefaultLBNetwork+")")
	cmd.Flags().StringVar(&e.AdvertiseAddress, "advertise-address", "", "make the API server reachable from other machines on HOST[:PORT] (an address of this host; port default 6443), shared by every cluster and routed by TLS server name; the kubeconfig names it")
	cmd.Flags().StringSliceVar(&opts.labels, "label", nil, "label KEY=VALUE recorded with the cluster, which addon templates read as {{ .Labels.KEY }}, like pr=42 (repeat, or comma-separate)")
	cmd.Flags().StringVar(&e.IngressDomainBase, "ingress-domain-base", "", "wildcard-DNS service ingress domains are named under when there is no --domain (default "+local.DefaultIngressDomainBase+")")
	return cmd
}

// resolveSpec merges the file and the flags that were set into one spec.
func resolveSpec(cmd *cobra.Command, e *env.Env, opts *options, name string) (v1alpha1.ClusterTemplateSpec, string, error) {
	var spec v1alpha1.ClusterTemplateSpec
	if opts.file != "" {
		t, err := clusterfile.Read(opts.file, e.In)
		if err != nil {
			return spec, "", err
		}
		spec = t.Spec
		if name == "" {
			name = t.Name
		}
	}
	if name == "" {
		return spec, "", errors.New("a cluster name is required: ephemera create cluster NAME (or metadata.name in the -f file)")
	}
	if cmd.Flags().Changed("real-nodes") {
		n := opts.realNodes
		spec.Nodes.Real = &n
	}
	if cmd.Flags().Changed("simulated-nodes") {
		n := opts.simulatedNodes
		spec.Nodes.Simulated = &n
	}
	if cmd.Flags().Changed("kubernetes-version") {
		spec.KubernetesVersion = opts.kubernetesVersion
	}
	if len(opts.ports) > 0 {
		spec.Network.Ports = nil
		for _, p := range opts.ports {
			m, err := portproxy.Parse(p)
			if err != nil {
				return spec, "", err
			}
			spec.Network.Ports = append(spec.Network.Ports, local.MappingsToAPI([]portproxy.Mapping{m})...)
		}
	}
	if cmd.Flags().Changed("dns-upstream") {
		spec.Network.DNSUpstream = opts.dnsUpstream
	}
	if cmd.Flags().Changed("domain") {
		spec.Network.Domain = opts.domain
	}
	if cmd.Flags().Changed("insecure-registry") {
		spec.Network.InsecureRegistries = opts.insecureRegistries
	}
	if opts.wait < 0 {
		return spec, "", fmt.Errorf("--wait %s: must not be negative", opts.wait)
	}
	return spec, name, nil
}

func run(ctx context.Context, e *env.Env, opts *options, name string, spec v1alpha1.ClusterTemplateSpec) error {
	p, err := e.Providers().Get(string(spec.ProviderOrDefault()))
	if err != nil {
		return err
	}
	labels, err := clusterfile.ParseLabels(opts.labels)
	if err != nil {
		return err
	}
	dir, err := clusterfile.Dir(opts.file)
	if err != nil {
		return err
	}
	started := time.Now()
	c, err := lifecycle.Create(ctx, p, name, spec, lifecycle.CreateOptions{
		Wait:     opts.wait,
		Retain:   opts.retain,
		Progress: e.Progress(),
		Labels:   labels,
		Addons:   lifecycle.AddonOptions{Sources: addons.Sources{Dir: dir, PlainHTTP: spec.Network.InsecureRegistries}, Labels: labels},
	})
	if err != nil {
		return fmt.Errorf("create cluster %q: %w", name, withHint(err))
	}
	state := "is ready"
	switch {
	case len(spec.Addons) > 0:
		state = fmt.Sprintf("is ready with its addons (%s)", lifecycle.PhaseNames(spec.Addons))
	case opts.wait == 0:
		state = "answers (controllers and nodes are still starting)"
	}
	fmt.Fprintf(e.ErrOut, "Cluster %q (Kubernetes %s, %s) %s after %s.\n\nUse it with:\n", name, c.KubernetesVersion, lifecycle.NodeCounts(c.RealNodes, c.SimulatedNodes), state, time.Since(started).Round(10*time.Millisecond))
	if c.KubeconfigPath != "" {
		fmt.Fprintf(e.ErrOut, "  export KUBECONFIG=%s\nor:\n", c.KubeconfigPath)
	}
	fmt.Fprintf(e.ErrOut, "  ephemera get kubeconfig %s > %s.kubeconfig\nDelete it with:\n  ephemera delete cluster %s\n", name, name, name)
	return nil
}

// withHint adds to a failed create what the user can do about the cluster
// left behind: remove a kept one, or keep the next one with --retain.
func withHint(err error) error {
	var ce *lifecycle.CreateError
	if !errors.As(err, &ce) {
		return err
	}
	var msg string
	switch {
	case ce.Retained:
		msg = fmt.Sprintf("%v\n(the cluster was kept because of --retain; remove it with: ephemera delete cluster %s)", ce.Err, ce.Name)
	case ce.DeleteErr != nil:
		msg = fmt.Sprintf("%v\n(deleting the half-created cluster failed too: %v; remove it with: ephemera delete cluster %s)", ce.Err, ce.DeleteErr, ce.Name)
	case ce.Deleted:
		msg = fmt.Sprintf("%v\n(the half-created cluster was deleted; pass --retain to keep it for debugging)", ce.Err)
	default:
		return err
	}
	return &hintError{msg: msg, err: err}
}

// hintError is an error with the command's advice in its message.
type hintError struct {
	msg string
	err error
}

func (e *hintError) Error() string { return e.msg }

// Unwrap returns the error the advice is about.
func (e *hintError) Unwrap() error { return e.err }
