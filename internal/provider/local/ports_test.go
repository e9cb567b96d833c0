package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recordPorts returns a record func for allocatePorts that persists the
// ports of cluster name where usedPorts finds them, as Create does.
func recordPorts(p *Provider, name string) func(ports) error {
	return func(ps ports) error {
		dir := p.clusterDir(name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		return writeJSON(filepath.Join(dir, clusterFile), clusterState{Name: name, Ports: ps})
	}
}

// recordFillers records used, six at a time, as the ports of filler
// clusters.
func recordFillers(t *testing.T, p *Provider, used []int) {
	t.Helper()
	for i := 0; i < len(used); i += 6 {
		var chunk [6]int
		for j := range chunk {
			chunk[j] = used[min(i+j, len(used)-1)]
		}
		dir := p.clusterDir(fmt.Sprintf("filler-%d", i/6))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(clusterState{Ports: ports{chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5]}})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, clusterFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAllocatePortsConcurrent(t *testing.T) {
	const clusters = 8
	// Every 10th port recorded: each allocation of 6 consecutive free ports
	// that ignored the records would hit one with probability 0.6, so all 8
	// missing them by luck has a probability below 0.001.
	var everyTenth []int
	for port := portRangeStart; port < portRangeEnd; port += 10 {
		everyTenth = append(everyTenth, port)
	}
	tests := []struct {
		name string
		used []int
	}{
		{"empty state", nil},
		{"ports recorded by other clusters", everyTenth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := New(Options{StateDir: t.TempDir()})
			recordFillers(t, p, tt.used)

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var inRecord atomic.Int32
			got := make([]ports, clusters)
			errs := make([]error, clusters)
			var wg sync.WaitGroup
			for i := range clusters {
				wg.Go(func() {
					name := fmt.Sprintf("c%d", i)
					errs[i] = p.allocatePorts(ctx, func(ps ports) error {
						n := inRecord.Add(1)
						defer inRecord.Add(-1)
						if n != 1 {
							return fmt.Errorf("%d records at once: the ports lock does not serialise them", n)
						}
						got[i] = ps
						return recordPorts(p, name)(ps)
					})
				})
			}
			wg.Wait()

			seen := map[int]string{}
			for i, ps := range got {
				if errs[i] != nil {
					t.Fatalf("allocatePorts c%d: %v", i, errs[i])
				}
				for _, port := range ps.all() {
					if port < portRangeStart || port >= portRangeEnd {
						t.Errorf("c%d got port %d outside [%d, %d)", i, port, portRangeStart, portRangeEnd)
					}
					if slices.Contains(tt.used, port) {
						t.Errorf("c%d got port %d, which another cluster has", i, port)
					}
					if other, dup := seen[port]; dup {
						t.Errorf("port %d given to both %s and c%d", port, other, i)
					}
					seen[port] = fmt.Sprintf("c%d", i)
				}
			}
			if len(seen) != clusters*6 {
				t.Errorf("got %d distinct ports, want %d", len(seen), clusters*6)
			}

			// usedPorts finds every recorded port.
			used, err := p.usedPorts()
			if err != nil {
				t.Fatal(err)
			}
			for port := range seen {
				if !used[port] {
					t.Errorf("usedPorts misses port %d", port)
				}
			}
		})
	}
}

func TestAllocatePortsRecordError(t *testing.T) {
	p := New(Options{StateDir: t.TempDir()})
	boom := errors.New("boom")
	if err := p.allocatePorts(context.Background(), func(ports) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("allocatePorts = %v, want the record error", err)
	}
	// The ports lock was released: another allocation does not wait.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := p.allocatePorts(ctx, func(ports) error { return nil }); err != nil {
		t.Fatalf("allocatePorts after a failed record: %v", err)
	}
}

func TestUsedPorts(t *testing.T) {
	p := New(Options{StateDir: t.TempDir()})
	if used, err := p.usedPorts(); err != nil || len(used) != 0 {
		t.Fatalf("usedPorts without clusters dir = %v, %v", used, err)
	}
	write := func(name string, content []byte) {
		dir := p.clusterDir(name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if content != nil {
			if err := os.WriteFile(filepath.Join(dir, clusterFile), content, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := recordPorts(p, "a")(ports{20001, 20002, 20003, 20004, 20005, 20006}); err != nil {
		t.Fatal(err)
	}
	if err := recordPorts(p, "b")(ports{30001, 30002, 30003, 30004, 30005, 30006}); err != nil {
		t.Fatal(err)
	}
	write("no-plan", nil)
	write("corrupt", []byte("{"))
	used, err := p.usedPorts()
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for port := range used {
		got = append(got, port)
	}
	slices.Sort(got)
	want := []int{20001, 20002, 20003, 20004, 20005, 20006, 30001, 30002, 30003, 30004, 30005, 30006}
	if !slices.Equal(got, want) {
		t.Fatalf("usedPorts = %v, want %v", got, want)
	}
}

func TestBindable(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "0.0.0.0"} {
		t.Run(host, func(t *testing.T) {
			l, err := net.Listen("tcp4", net.JoinHostPort(host, "0"))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			port := l.Addr().(*net.TCPAddr).Port
			if bindable(port) {
				t.Fatalf("bindable(%d) = true while %s:%d is held", port, host, port)
			}
			l.Close()
			if !bindable(port) {
				t.Fatalf("bindable(%d) = false after closing the listener", port)
			}
			// bindable leaves the port free for the component that gets it.
			l2, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				t.Fatalf("port %d not free after bindable: %v", port, err)
			}
			l2.Close()
		})
	}
}
