package addons

// Facts are what templates in manifests and values see: {{ .Name }}, {{ .Ingress.Address }},
// {{ .Ingress.Domain }}, {{ .KubernetesVersion }}, {{ .Labels.pr }}. An unknown key is an error
// (a missing label too).
type Facts struct {
	// Name is the cluster's name.
	Name string
	// KubernetesVersion is the cluster's Kubernetes version, e.g. v1.36.3.
	KubernetesVersion string
	// Ingress is where the cluster's LoadBalancer Services and ingresses are reached.
	Ingress Ingress
	// Labels are the TestCluster's labels (repo, pr…).
	Labels map[string]string
}

// Ingress is the cluster's ingress address and DNS domain.
type Ingress struct {
	// Address is the ingress IP address.
	Address string
	// Domain is the DNS domain whose names resolve to the ingress.
	Domain string
}
