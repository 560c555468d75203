package shim

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// BinaryName is the file name install writes and the webhook's hooks execute.
const BinaryName = "lastcall-shim"

// Installer copies an executable into a directory, typically an emptyDir that app containers mount read-only.
type Installer struct {
	// Source is the file to copy; /proc/self/exe when empty, which works with a read-only root filesystem
	// and whatever path the image put the binary at.
	Source string
}

// Install writes DIR/lastcall-shim atomically: a temp file in DIR, fsync, chmod 0755, rename, fsync of DIR.
// A reader sees the old file or the complete new one, never a partial binary, and running it twice is harmless.
// It writes only inside dir, so it works on a read-only root filesystem as any user that may write to dir.
func (in Installer) Install(dir string) (dest string, size int64, err error) {
	src := in.Source
	if src == "" {
		src = "/proc/self/exe"
	}
	dest = filepath.Join(dir, BinaryName)
	r, err := os.Open(src)
	if err != nil {
		return dest, 0, fmt.Errorf("open own executable: %w", err)
	}
	defer r.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return dest, 0, fmt.Errorf("create %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+BinaryName+".tmp-*")
	if err != nil {
		return dest, 0, fmt.Errorf("create temp file in %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if size, err = io.Copy(tmp, r); err != nil {
		return dest, size, fmt.Errorf("copy to %s: %w", tmp.Name(), err)
	}
	// Chmod on the file, not the path: CreateTemp makes 0600 and the umask must not decide the mode.
	if err = tmp.Chmod(0o755); err != nil {
		return dest, size, fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if err = tmp.Sync(); err != nil {
		return dest, size, fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	if err = tmp.Close(); err != nil {
		return dest, size, fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err = os.Rename(tmp.Name(), dest); err != nil {
		return dest, size, fmt.Errorf("rename into %s: %w", dest, err)
	}
	// The directory entry must be durable too; some filesystems (tmpfs) cannot fsync a directory, which is fine.
	if d, derr := os.Open(dir); derr == nil {
		if serr := d.Sync(); serr != nil && !errors.Is(serr, os.ErrInvalid) {
			d.Close()
			return dest, size, fmt.Errorf("fsync %s: %w", dir, serr)
		}
		d.Close()
	}
	return dest, size, nil
}

const installSynopsis = `install DIR

Copies this executable to DIR/lastcall-shim (temp file in DIR, fsync, rename; mode 0755). Writes nothing
outside DIR, so it runs with a read-only root filesystem as any user that can write DIR. Idempotent.`

func installMain(args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("install", installSynopsis, stdout)
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErr("install: want exactly one argument DIR, got %d", fs.NArg())
	}
	dest, size, err := Installer{}.Install(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	fmt.Fprintf(stdout, "installed %s (%d bytes)\n", dest, size)
	return nil
}
