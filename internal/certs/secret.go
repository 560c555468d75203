// Package certs keeps the webhook server's serving certificate in files: it creates the Secret the rotator
// fills (self mode) and copies that Secret into the server's certificate directory whenever it changes.
package certs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// EnsureSecret creates the (empty) certificate Secret when it does not exist, so the rotator has something to
// fill. The Secret is the binary's, not Helm's: a chart that rendered it would show a diff on every GitOps sync.
func EnsureSecret(ctx context.Context, c client.Client, key types.NamespacedName) error {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace,
		Labels: map[string]string{"app.kubernetes.io/managed-by": "lastcall-webhook"}}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: {}, corev1.TLSPrivateKeyKey: {}}}
	err := c.Create(ctx, s)
	if err == nil || apierrors.IsAlreadyExists(err) {
		return nil
	}
	return fmt.Errorf("create certificate Secret %s: %w", key, err)
}

// SecretFiles copies the certificate Secret into the webhook server's cert directory whenever it changes.
// The directory is an emptyDir: reading the Secret through the API makes a rotation take effect in seconds,
// where a mounted Secret volume waits for the kubelet's sync (a minute or more). The webhook server's
// certwatcher then reloads the files without a restart.
type SecretFiles struct {
	Reader   client.Reader
	Key      types.NamespacedName
	Dir      string
	Interval time.Duration
	Log      logr.Logger
}

// Start implements manager.Runnable.
func (s *SecretFiles) Start(ctx context.Context) error {
	if s.Interval == 0 {
		s.Interval = 2 * time.Second
	}
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	for {
		if err := s.sync(ctx); err != nil {
			s.Log.Error(err, "syncing certificate files")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *SecretFiles) sync(ctx context.Context) error {
	var sec corev1.Secret
	if err := s.Reader.Get(ctx, s.Key, &sec); err != nil {
		return fmt.Errorf("get Secret %s: %w", s.Key, err)
	}
	crt, key := sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey]
	if len(crt) == 0 || len(key) == 0 {
		return nil // the rotator has not filled it yet
	}
	// Key first: certwatcher reloads on a cert change and must find the matching key already in place.
	changed, err := writeIfChanged(filepath.Join(s.Dir, corev1.TLSPrivateKeyKey), key, 0o600)
	if err != nil {
		return err
	}
	c2, err := writeIfChanged(filepath.Join(s.Dir, corev1.TLSCertKey), crt, 0o644)
	if err != nil {
		return err
	}
	if changed || c2 {
		s.Log.Info("certificate files updated", "dir", s.Dir)
	}
	return nil
}

func writeIfChanged(path string, data []byte, mode os.FileMode) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return false, fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return false, fmt.Errorf("rename %s: %w", tmp, err)
	}
	return true, nil
}
