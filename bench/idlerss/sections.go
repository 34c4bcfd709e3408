package main

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"sort"
	"strings"
)

// section is how much of one of the executable's allocated ELF sections is
// mapped into the process, in KiB.
type section struct {
	name           string
	size, resident int
}

// residentSections reads /proc/PID/pagemap over each allocated section of
// exe: a page counts when it is present in the process's page tables
// (whether the process touched it or the kernel's fault-around mapped it
// beside a touched page). A page shared by two sections counts for both.
func residentSections(pid int, exe string) ([]section, error) {
	f, err := elf.Open(exe)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pm, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", pid))
	if err != nil {
		return nil, err
	}
	defer pm.Close()
	const page = 4096
	var out []section
	for _, s := range f.Sections {
		if s.Flags&elf.SHF_ALLOC == 0 || s.Size == 0 || strings.HasPrefix(s.Name, ".note") {
			continue
		}
		first, last := s.Addr/page, (s.Addr+s.Size-1)/page
		buf := make([]byte, 8*(last-first+1))
		if _, err := pm.ReadAt(buf, int64(first*8)); err != nil {
			return nil, fmt.Errorf("pagemap of %s: %w", s.Name, err)
		}
		n := 0
		for i := 0; i < len(buf); i += 8 {
			if binary.LittleEndian.Uint64(buf[i:])&(1<<63) != 0 {
				n++
			}
		}
		out = append(out, section{name: s.Name, size: int(s.Size / 1024), resident: n * page / 1024})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].resident > out[j].resident })
	return out, nil
}

func formatSections(ss []section) string {
	var b strings.Builder
	for i, s := range ss {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %s/%s", s.name, mib(s.resident), mib(s.size))
	}
	return b.String()
}
