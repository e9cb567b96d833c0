package main

import (
	"strings"
	"testing"
)

func TestMentions(t *testing.T) {
	const dir = "/tmp/eb-1/kwok/clusters/k-bench-001"
	cmdline := func(args ...string) []byte { return []byte(strings.Join(args, "\x00") + "\x00") }
	for _, tc := range []struct {
		name string
		cmd  []byte
		want bool
	}{
		{"the dir itself", cmdline("ephemera", "supervise", dir), true},
		{"a flag naming the dir", cmdline("etcd", "--data-dir="+dir), true},
		{"a path below it", cmdline("kube-apiserver", "--cert-dir="+dir+"/pki"), true},
		{"a path below it, flag and value apart", cmdline("kwok", "--kubeconfig", dir+"/kubeconfig.yaml"), true},
		{"another cluster whose name extends this one", cmdline("etcd", "--data-dir="+dir+"0"), false},
		{"unrelated", cmdline("sleep", "10"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := mentions(tc.cmd, dir); got != tc.want {
				t.Errorf("mentions = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestBreakdown(t *testing.T) {
	got := breakdown(map[string]float64{"etcd": 48.4, "kube-apiserver": 234.2, "kwok": 48.4})
	if want := "kube-apiserver 234, etcd 48, kwok 48"; got != want {
		t.Errorf("breakdown = %q, want %q", got, want)
	}
}

func TestOptionsDefaults(t *testing.T) {
	quick := options{quick: true, rounds: 4}
	quick.defaults()
	if quick.rounds != 4 || quick.memRounds != 1 || quick.capacityBound != 3 {
		t.Errorf("quick defaults: %+v", quick)
	}
	normal := options{}
	normal.defaults()
	if normal.rounds != 7 || normal.memRounds != 3 || normal.capacityBound != 12 || normal.budget.Minutes() != 15 {
		t.Errorf("default settings: %+v", normal)
	}
	if _, err := parseFlags([]string{"--skip", "nope"}, new(strings.Builder)); err == nil {
		t.Error("parseFlags accepted an unknown scenario")
	}
}

func TestStatCPU(t *testing.T) {
	// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
	stat := "4242 (kube controller) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 12 0 100 0 0\n"
	if got, want := statCPU(stat), 3.0; got != want {
		t.Errorf("statCPU = %v, want %v", got, want)
	}
	if got := statCPU("garbage"); got != 0 {
		t.Errorf("statCPU of garbage = %v, want 0", got)
	}
}

func TestNoiseNote(t *testing.T) {
	if got := noiseNote([]float64{0.5, 3.5}, 2); !strings.Contains(got, "up to 3.5 on 2 cores") {
		t.Errorf("busy machine: %q", got)
	}
	if got := noiseNote([]float64{0.5, 1.5}, 2); !strings.Contains(got, "at or below 1.5 on 2 cores") {
		t.Errorf("quiet machine: %q", got)
	}
	if got := noiseNote(nil, 2); !strings.Contains(got, "not sampled") {
		t.Errorf("no samples: %q", got)
	}
}
