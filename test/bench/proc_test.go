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
