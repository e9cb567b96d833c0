// Package metrics defines the server's Prometheus metrics, registered with
// controller-runtime's registry and served on the manager's /metrics.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// latencyBuckets span a warm claim (milliseconds) to a slow create
// (minutes).
var latencyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// The server's metrics.
var (
	// TestClusters counts TestClusters by phase, pool and provider.
	TestClusters = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ephemera_testclusters",
		Help: "TestClusters by phase, pool (empty for template ones) and provider.",
	}, []string{"phase", "pool", "provider"})
	// ProvisionDuration times creates of clusters, start to ready.
	ProvisionDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ephemera_provision_duration_seconds",
		Help:    "Time from starting to create a cluster until it is ready.",
		Buckets: latencyBuckets,
	}, []string{"provider"})
	// ClaimDuration times TestClusters from first seen to Ready.
	ClaimDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ephemera_claim_duration_seconds",
		Help:    "Time from a TestCluster being seen until its kubeconfig Secret is published.",
		Buckets: latencyBuckets,
	}, []string{"pool"})
	// QueueLength counts waiting TestClusters by queue.
	QueueLength = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ephemera_queue_length",
		Help: "TestClusters waiting, by queue (pool:NAMESPACE/NAME or capacity).",
	}, []string{"queue"})
	// QueueWait times how long TestClusters waited before being served.
	QueueWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ephemera_queue_wait_seconds",
		Help:    "Time TestClusters waited in a queue before a cluster was bound or admitted.",
		Buckets: latencyBuckets,
	}, []string{"queue"})
	// PoolReady counts unclaimed Ready clusters per pool.
	PoolReady = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ephemera_pool_ready",
		Help: "Unclaimed Ready clusters per pool.",
	}, []string{"namespace", "pool"})
	// PoolHits counts claims bound at once; PoolMisses claims that waited.
	PoolHits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ephemera_pool_hits_total",
		Help: "Claims bound to a Ready cluster at once.",
	}, []string{"namespace", "pool"})
	PoolMisses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ephemera_pool_misses_total",
		Help: "Claims that found no Ready cluster and had to wait.",
	}, []string{"namespace", "pool"})
	// Reaped counts orphaned clusters the reaper deleted.
	Reaped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ephemera_reaped_total",
		Help: "Clusters deleted by the reaper because nothing owned them.",
	}, []string{"provider"})
	// ClusterSeconds adds up bound cluster time, the basis of cost reports.
	ClusterSeconds = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ephemera_cluster_seconds_total",
		Help: "Seconds clusters were bound to TestClusters, by namespace and owner (the value of the serve --owner-label label).",
	}, []string{"namespace", "owner"})
)

// Register adds every metric to controller-runtime's registry. Call once.
func Register() {
	crmetrics.Registry.MustRegister(TestClusters, ProvisionDuration, ClaimDuration, QueueLength, QueueWait,
		PoolReady, PoolHits, PoolMisses, Reaped, ClusterSeconds)
}
