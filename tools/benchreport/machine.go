package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// machine describes where the numbers were measured.
type machine struct {
	kernel     string
	cpu        string
	cores      int
	memory     string
	goVersion  string
	btrfsProgs string
	imagesOn   string // the directory holding the filesystem images, and its filesystem
	revision   string // the btrstore commit measured, "-dirty" with uncommitted changes
	date       time.Time
	loadStart  string
	loadEnd    string
}

func describeMachine(root string) machine {
	m := machine{
		revision:   gitRevision(root),
		kernel:     firstLine(readFile("/proc/sys/kernel/osrelease"), "unknown"),
		cpu:        cpuModel(),
		cores:      runtime.NumCPU(),
		memory:     memTotal(),
		goVersion:  commandOutput(goCommand(), "env", "GOVERSION"),
		btrfsProgs: commandOutput("btrfs", "--version"),
		imagesOn:   tempFilesystem(),
		date:       time.Now().UTC(),
		loadStart:  loadAverage(),
	}
	if m.goVersion == "" {
		m.goVersion = runtime.Version()
	}
	return m
}

// line is the machine line of the report.
func (m machine) line() string {
	parts := []string{
		"Linux " + m.kernel,
		m.cpu,
		fmt.Sprintf("%d cores", m.cores),
		m.memory + " memory",
		m.goVersion,
	}
	if m.btrfsProgs != "" {
		parts = append(parts, m.btrfsProgs)
	}
	parts = append(parts, "images in "+m.imagesOn, m.date.Format("2006-01-02 15:04 UTC"))
	if m.revision != "" {
		parts = append(parts, "btrstore "+m.revision)
	}
	return strings.Join(parts, ", ")
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}

func firstLine(s, otherwise string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if s == "" {
		return otherwise
	}
	return s
}

func commandOutput(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return ""
	}
	return firstLine(string(out), "")
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	for _, l := range strings.Split(readFile("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// memTotal is MemTotal of /proc/meminfo in GiB.
func memTotal() string {
	for _, l := range strings.Split(readFile("/proc/meminfo"), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "MemTotal:" {
			if kib, err := strconv.ParseFloat(f[1], 64); err == nil {
				return fmt.Sprintf("%.1f GiB", kib/(1<<20))
			}
		}
	}
	return "unknown"
}

// loadAverage is the 1-, 5- and 15-minute load average.
func loadAverage() string {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// tempFilesystem names the temp directory, where the fixture puts its
// images, and the filesystem type and device of the mount holding it.
func tempFilesystem() string {
	dir, err := filepath.EvalSymlinks(os.TempDir())
	if err != nil {
		dir = os.TempDir()
	}
	best, desc := "", "unknown filesystem"
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return dir
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 3 {
			continue
		}
		mnt := fs[1]
		if (dir == mnt || strings.HasPrefix(dir, strings.TrimSuffix(mnt, "/")+"/")) && len(mnt) >= len(best) {
			best, desc = mnt, fs[2]+" on "+fs[0]
		}
	}
	return dir + " (" + desc + ")"
}

// gitRevision is the commit of the work tree at root, with "-dirty" when it
// has uncommitted changes, or "" outside git.
func gitRevision(root string) string {
	cmd := exec.Command("git", "describe", "--always", "--dirty", "--abbrev=12")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return firstLine(string(out), "")
}
