package main

import "time"

// results is everything one run measured, in the shape the report needs.
type results struct {
	// Command is how the run was started, as the user types it.
	Command string
	// Argv is the harness's own command line, every setting explicit.
	Argv string
	// Mode is "default" or "quick".
	Mode     string
	Facts    []fact
	Tools    []string
	Compare  []*metric
	Capacity []capacity
	// CapacityBound is the most idle clusters a capacity run creates.
	CapacityBound int
	// Cores is the machine's CPU count.
	Cores    int
	Claims   []claimResult
	RealNode *realNodeResult
	// How tells per tool how each step was driven.
	How      map[string]commands
	Notes    []string
	Failures []string
	Duration time.Duration
}

// fact is one line of the machine description.
type fact struct{ Name, Value string }

// metric is one row of the side-by-side table.
type metric struct {
	Title string
	// Unit is "s" or "MiB".
	Unit string
	// Values are the samples per tool.
	Values map[string][]float64
	// NA says per tool why it was not measured.
	NA map[string]string
	// Failed counts failed samples per tool.
	Failed map[string]int
}

func newMetric(title, unit string) *metric {
	return &metric{Title: title, Unit: unit, Values: map[string][]float64{}, NA: map[string]string{}, Failed: map[string]int{}}
}

// capacity is how many idle clusters of one tool fit on the machine.
type capacity struct {
	Tool string
	// Baseline is the create time (s) that doubling is measured against:
	// the tool's median cold create.
	Baseline float64
	// Creates are the create times (s) in order: Creates[i] ran with i idle
	// clusters of the tool.
	Creates []float64
	// Fit is how many idle clusters ran when the run stopped creating.
	Fit int
	// Reason is why it stopped.
	Reason string
	// MemAvailableStart is MemAvailable (MiB) before the first create.
	MemAvailableStart float64
	// MemPerCluster is the drop of MemAvailable (MiB) per idle cluster.
	MemPerCluster float64
	// CPUPerCluster is the CPU (cores) one idle cluster uses.
	CPUPerCluster float64
}

// claimResult is BenchmarkClaimWarmPool at one concurrency.
type claimResult struct {
	Concurrency int
	Samples     int
	// P50, P99, Min and Max are in ms.
	P50, P99, Min, Max float64
	Command            string
	Err                string
}

// realNodeResult is BenchmarkCreateFirstPodRunning.
type realNodeResult struct {
	Samples int
	// P50, Min, Max and DeleteP50 are in ms.
	P50, Min, Max, DeleteP50 float64
	Command                  string
	Err                      string
}
