package image

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
)

// ErrNotStatic is returned by CheckStaticBinary for a program that needs a
// dynamic loader or shared libraries, which a single-binary image lacks.
var ErrNotStatic = errors.New("dynamically linked")

// CheckStaticBinary checks that path is an executable, statically linked
// linux/amd64 ELF program, which runs in an image holding nothing else.
func CheckStaticBinary(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s is not a Linux program (ELF): %w", path, err)
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("%s is built for %s (%s), but nodes run linux/amd64: build it for amd64 (GOARCH=amd64)", path, f.Machine, f.Class)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("%s is not an executable program (ELF type %s)", path, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			libs, _ := f.ImportedLibraries()
			return fmt.Errorf("%s needs a dynamic loader and the shared libraries %v, which the image does not have; build it statically (Go: CGO_ENABLED=0 go build; C: -static): %w",
				path, libs, ErrNotStatic)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return fmt.Errorf("%s needs the shared libraries %v, which the image does not have; build it statically (Go: CGO_ENABLED=0 go build; C: -static): %w", path, libs, ErrNotStatic)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not executable: chmod +x %s", path, path)
	}
	return nil
}
