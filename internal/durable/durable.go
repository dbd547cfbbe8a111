// Package durable writes files so that a crash leaves either the old file
// or the whole new one, never half of one: write a temporary file beside
// the target, fsync it, rename it over the target, and fsync the directory
// so that the rename itself survives a power cut. The store's lease votes,
// its snapshots and the launcher's carried data all depend on it.
package durable

import (
	"io"
	"os"
	"path/filepath"
)

// WriteFile makes path hold b, with mode perm, durably.
func WriteFile(path string, b []byte, perm os.FileMode) error {
	return replace(path, perm, func(f *os.File) error {
		_, err := f.Write(b)
		return err
	})
}

// CopyFile makes dst a copy of src, with mode perm, durably.
func CopyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return replace(dst, perm, func(f *os.File) error {
		_, err := io.Copy(f, in)
		return err
	})
}

// replace writes path's new content through fill into a temporary file in
// the same directory, then renames it over path.
func replace(path string, perm os.FileMode, fill func(*os.File) error) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	err = fill(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, perm) // whatever the umask took away
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs a directory, which makes the renames and creations in it
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
