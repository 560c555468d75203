//go:build e2e

package framework

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// RepoRoot is the root of the lastcall clone (the directory of the main module's go.mod).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/lastcall-dev/lastcall\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the lastcall repository")
		}
		dir = parent
	}
}

// CacheDir mirrors hack/lib.sh: $LASTCALL_CACHE, else $XDG_CACHE_HOME/lastcall, else ~/.cache/lastcall.
func CacheDir() string {
	if d := os.Getenv("LASTCALL_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "lastcall")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "lastcall")
}

// Image references and the tarballs hack/images.sh writes for them.
const (
	ImagePause        = "local.test/pause:3.10"
	ImageDebianWeb    = "local.test/debian-web:1"
	ImageDebianWorker = "local.test/debian-worker:1" // Celery and Redis from Debian
	ImageTestapp      = "local.test/testapp:1"
)

// ImageTar returns the tarball of one of the images above (base images in the cache, project images in _output).
func ImageTar(root, image string) string {
	switch image {
	case ImagePause:
		return filepath.Join(CacheDir(), "images", "pause.tar")
	case ImageDebianWeb:
		return filepath.Join(CacheDir(), "images", "debian-web.tar")
	case ImageDebianWorker:
		return filepath.Join(CacheDir(), "images", "debian-worker.tar")
	case ImageTestapp:
		return filepath.Join(root, "_output", "images", "testapp.tar")
	}
	// ghcr.io/lastcall-dev/NAME:TAG -> _output/images/NAME.tar; local.test/cert-manager-X:TAG -> the cache
	name := image
	if strings.HasPrefix(name, "local.test/cert-manager-") {
		name = strings.TrimPrefix(name, "local.test/")
		name, _, _ = strings.Cut(name, ":")
		return filepath.Join(CacheDir(), "images", name+".tar")
	}
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	if i := strings.Index(name, ":"); i >= 0 {
		name = name[:i]
	}
	return filepath.Join(root, "_output", "images", name+".tar")
}
