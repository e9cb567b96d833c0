// Command bench measures ephemera against the peers users would pick
// instead (kwokctl with its binary runtime, controller-runtime's envtest) on
// one machine, with the same Kubernetes binaries, in one run, and writes the
// results into docs/benchmarks.md. Run it with `make bench` (hack/bench.sh).
package main
