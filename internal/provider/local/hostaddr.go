package local

import (
	"fmt"
	"net/netip"
	"path/filepath"
)

// HostAddress returns the host end of a real-node cluster's veth pair: an
// address of this host that processes in the cluster's network namespace
// (its node, its hostNetwork pods) reach directly, and its pods through the
// node's default route, masqueraded behind the node. ok is false for a
// cluster without a real node.
func (p *Provider) HostAddress(name string) (addr netip.Addr, ok bool, err error) {
	var st clusterState
	if err := readJSON(filepath.Join(p.clusterDir(name), clusterFile), &st); err != nil {
		return netip.Addr{}, false, fmt.Errorf("read cluster %q: %w", name, err)
	}
	if st.Node == nil {
		return netip.Addr{}, false, nil
	}
	return st.Node.Network.HostIP, true, nil
}
