package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ProviderName names the backend that creates a cluster.
// +kubebuilder:validation:Enum=local
type ProviderName string

// ProviderLocal runs the cluster as processes on this host.
const ProviderLocal ProviderName = "local"

// ClusterTemplateSpec describes how to build a cluster. The CLI reads the
// same schema from `ephemera create cluster -f`.
type ClusterTemplateSpec struct {
	// provider names the backend that creates clusters. Defaults to local.
	// +optional
	Provider ProviderName `json:"provider,omitempty"`

	// kubernetesVersion is the Kubernetes release, like v1.36.3. Defaults to
	// the newest release ephemera is tested with. Install it first with
	// `ephemera kube install --version`.
	// +optional
	// +kubebuilder:validation:Pattern=`^v1\.[0-9]+\.[0-9]+$`
	// +kubebuilder:validation:MaxLength=32
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`

	// nodes describes the cluster's nodes.
	// +optional
	Nodes NodesSpec `json:"nodes,omitempty"`

	// network sets the cluster's address ranges.
	// +optional
	Network NetworkSpec `json:"network,omitempty"`

	// addons are phases of manifests and Helm charts installed in order once
	// the cluster is up: a phase starts when everything the previous one
	// installed is ready. A cluster counts as ready only after all of them.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=name
	Addons []AddonPhase `json:"addons,omitempty"`
}

// NodesSpec describes the nodes of a cluster.
type NodesSpec struct {
	// real is the number of real nodes: a kubelet with containerd, runc, CNI
	// and kube-proxy in the cluster's own network namespace, where pods run
	// for real. The local provider runs at most one. Defaults to 1 when
	// neither count is set, else to 0.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1
	Real *int32 `json:"real,omitempty"`
	// simulated is the number of simulated nodes: Node objects kept Ready by
	// a node simulator, where pods are scheduled and reported Running without
	// running containers. Defaults to 0.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	Simulated *int32 `json:"simulated,omitempty"`
}

// NetworkSpec sets the address ranges of a cluster.
type NetworkSpec struct {
	// serviceSubnet is the CIDR Service ClusterIPs come from. Defaults to
	// 10.96.0.0/16.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	ServiceSubnet string `json:"serviceSubnet,omitempty"`

	// podSubnet is the CIDR pod IPs come from. Defaults to 10.244.0.0/16.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	PodSubnet string `json:"podSubnet,omitempty"`

	// dnsUpstream are the resolvers the cluster's DNS forwards external
	// names to, like 10.0.0.53 or 10.0.0.53:5353, instead of the host's
	// (its resolv.conf's nameservers, loopback ones included).
	// +optional
	// +kubebuilder:validation:MaxItems=3
	// +kubebuilder:validation:items:MaxLength=64
	DNSUpstream []string `json:"dnsUpstream,omitempty"`

	// domain makes *.<cluster>.<domain> resolve to the cluster's ingress
	// address through ephemera's DNS forwarder (for pods, and for the host
	// once its resolver asks the forwarder). Without it the ingress domain
	// is a wildcard-DNS name of the ingress address, like
	// 10-251-0-1.sslip.io.
	// +optional
	// +kubebuilder:validation:MaxLength=200
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Domain string `json:"domain,omitempty"`

	// ports forward host ports to ports of the cluster's ingress address
	// (real-node clusters only). A hostPort of 0 picks a free port, shown
	// in the TestCluster's status: pool templates need it, since their
	// clusters cannot share a host port.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	Ports []PortMapping `json:"ports,omitempty"`

	// insecureRegistries are registries, HOST:PORT, the cluster's nodes
	// may pull from over plain HTTP (directly, or through the host's
	// registry cache when it mirrors them). Every other registry must be
	// HTTPS.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=255
	// +listType=set
	InsecureRegistries []string `json:"insecureRegistries,omitempty"`
}

// PortMapping forwards a port of the host to a port of a cluster's ingress
// address, like `ephemera create cluster --port 127.0.0.1:8080:80/tcp`.
type PortMapping struct {
	// address is the host address to listen on. Defaults to 127.0.0.1;
	// 0.0.0.0 for jobs whose tests run in another container.
	// +optional
	// +kubebuilder:validation:MaxLength=45
	Address string `json:"address,omitempty"`
	// hostPort is the host port; 0 picks a free one.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=65535
	HostPort int32 `json:"hostPort,omitempty"`
	// port is the port of the ingress address, where a LoadBalancer
	// Service listens.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`
	// protocol is TCP or UDP. Defaults to TCP.
	// +optional
	// +kubebuilder:validation:Enum=TCP;UDP
	Protocol string `json:"protocol,omitempty"`
}

// ClusterTemplate is a reusable description of a cluster.
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=ct
// +kubebuilder:printcolumn:name="Provider",type=string,JSONPath=`.spec.provider`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.spec.kubernetesVersion`
// +kubebuilder:printcolumn:name="Simulated",type=integer,JSONPath=`.spec.nodes.simulated`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterTemplate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec describes the clusters built from this template.
	// +required
	Spec ClusterTemplateSpec `json:"spec"`
}

// ClusterTemplateList is a list of ClusterTemplates.
// +kubebuilder:object:root=true
type ClusterTemplateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	// items are the templates.
	Items []ClusterTemplate `json:"items"`
}
