package local

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/ephemera-dev/ephemera/internal/flock"
)

// Ports come from below the kernel's ephemeral range (32768+ by default), so
// outgoing connections do not take a port between choosing it and binding.
const (
	portRangeStart = 20000
	portRangeEnd   = 32000
)

// allocatePorts picks free ports for a new cluster and calls record while
// still holding the host-wide ports lock, so that concurrent creates never
// pick the same ports: record must persist the ports where usedPorts finds
// them.
func (p *Provider) allocatePorts(ctx context.Context, record func(ports) error) error {
	lock, err := flock.Acquire(ctx, filepath.Join(p.stateDir, "ports.lock"))
	if err != nil {
		return err
	}
	defer lock.Unlock()
	used, err := p.usedPorts()
	if err != nil {
		return err
	}
	next := portRangeStart + rand.IntN(portRangeEnd-portRangeStart)
	pick := func() (int, error) {
		for range portRangeEnd - portRangeStart {
			port := next
			next++
			if next >= portRangeEnd {
				next = portRangeStart
			}
			if used[port] || !bindable(port) {
				continue
			}
			used[port] = true
			return port, nil
		}
		return 0, errors.New("no free port left between " + strconv.Itoa(portRangeStart) + " and " + strconv.Itoa(portRangeEnd))
	}
	var ps ports
	for _, dst := range []*int{&ps.EtcdClient, &ps.EtcdPeer, &ps.APIServer, &ps.ControllerManager, &ps.Scheduler, &ps.Kwok} {
		if *dst, err = pick(); err != nil {
			return fmt.Errorf("allocate ports: %w", err)
		}
	}
	return record(ps)
}

// usedPorts returns the ports every existing cluster has been given.
func (p *Provider) usedPorts() (map[int]bool, error) {
	used := map[int]bool{}
	entries, err := os.ReadDir(p.clustersDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, e := range entries {
		var st clusterState
		if err := readJSON(filepath.Join(p.clustersDir(), e.Name(), clusterFile), &st); err != nil {
			continue
		}
		for _, port := range st.Ports.all() {
			used[port] = true
		}
	}
	return used, nil
}

func bindable(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
