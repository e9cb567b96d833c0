package server

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/internal/controller/provision"
	"github.com/ephemera-dev/ephemera/internal/failpoint"
)

// Keys of the instance record.
const (
	instanceHostKey     = "host"
	instanceMachineKey  = "machineID"
	instanceStateDirKey = "stateDir"
)

// InstanceRecordName is the ConfigMap, in the leader election namespace,
// that records where an instance's clusters live.
func InstanceRecordName(instance string) string { return "ephemera-instance-" + instance }

// claimInstance records, on the management cluster, the host and state dir
// whose clusters instance manages, or checks that they are this server's.
// Two servers of one instance with different state dirs would each take
// the other's TestClusters for ones whose clusters are gone; the second
// is refused with the reason.
func claimInstance(ctx context.Context, c client.Client, instance, namespace, stateDir string) error {
	if stateDir == "" {
		return nil
	}
	host, _ := os.Hostname()
	want := map[string]string{instanceHostKey: host, instanceMachineKey: machineID(), instanceStateDirKey: stateDir}
	key := types.NamespacedName{Namespace: namespace, Name: InstanceRecordName(instance)}
	cm := &corev1.ConfigMap{}
	err := c.Get(ctx, key, cm)
	if apierrors.IsNotFound(err) {
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
			Labels: map[string]string{provision.LabelServer: instance}}, Data: want}
		err = c.Create(ctx, cm)
		if apierrors.IsAlreadyExists(err) {
			err = c.Get(ctx, key, cm)
		} else if err == nil {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("read the instance record ConfigMap %s: %w", key, err)
	}
	if cm.Data[instanceMachineKey] == want[instanceMachineKey] && cm.Data[instanceStateDirKey] == stateDir {
		return nil
	}
	return fmt.Errorf("instance %q is served from state dir %s on host %s (recorded in ConfigMap %s): this server's state dir is %s on host %s. "+
		"Give this server another --instance, or run it with that host's state dir; if that server is gone for good and its clusters with it, delete the ConfigMap",
		instance, cm.Data[instanceStateDirKey], cm.Data[instanceHostKey], key, stateDir, host)
}

// machineID tells this host from others, also when they share a hostname.
func machineID() string {
	for _, path := range []string{"/etc/machine-id", "/var/lib/dbus/machine-id"} {
		if b, err := os.ReadFile(path); err == nil {
			if id := strings.TrimSpace(string(b)); id != "" {
				return id
			}
		}
	}
	host, _ := os.Hostname()
	return host
}

// loader loads the clusters of an earlier server once this replica leads.
type loader struct {
	prov     *provision.Provisioner
	instance string
	log      logr.Logger
}

// Start implements manager.Runnable.
func (l *loader) Start(ctx context.Context) error {
	failpoint.Inject(failpoint.ServeBeforeLoad)
	l.log.Info("Finding the clusters this server created before")
	adopted, err := l.prov.Load(ctx, map[string]string{provision.LabelServer: l.instance})
	if err != nil {
		return fmt.Errorf("find the clusters this server created before: %w", err)
	}
	l.log.Info("Adopted the clusters this server created before; checking them in the background", "clusters", adopted)
	return nil
}

// NeedLeaderElection implements manager.LeaderElectionRunnable.
func (l *loader) NeedLeaderElection() bool { return true }
