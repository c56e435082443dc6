package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
)

// Spec is a build: steps run in order, each on the result of the one
// before it.
type Spec struct {
	// Chroot runs each step's command chrooted into the step's rootfs
	// with /bin/sh from that rootfs, and Rootfs names a directory copied
	// in as the first step's starting point. Without it, commands run on
	// the host with the rootfs as working directory.
	Chroot bool   `json:"chroot,omitempty"`
	Rootfs string `json:"rootfs,omitempty"`
	Steps  []Step `json:"steps"`
}

// Step is one shell command and the caches mounted while it runs.
type Step struct {
	Run    string  `json:"run"`
	Caches []Cache `json:"caches,omitempty"`
}

// Cache mounts the named cache at Target, relative to the rootfs.
type Cache struct {
	Name   string `json:"name"`
	Target string `json:"target"`
}

func parseSpec(b []byte) (*Spec, error) {
	var s Spec
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	if s.Chroot && s.Rootfs == "" {
		return nil, fmt.Errorf("spec: chroot needs a rootfs to start from")
	}
	if len(s.Steps) == 0 {
		return nil, fmt.Errorf("spec: no steps")
	}
	for i, st := range s.Steps {
		if strings.TrimSpace(st.Run) == "" {
			return nil, fmt.Errorf("spec: step %d: empty run", i+1)
		}
		for _, c := range st.Caches {
			if c.Name == "" || c.Target == "" || strings.HasPrefix(c.Target, "/") || strings.Contains("/"+c.Target+"/", "/../") {
				return nil, fmt.Errorf("spec: step %d: cache needs a name and a relative target without ..: %+v", i+1, c)
			}
		}
	}
	return &s, nil
}

// stepID names the result of step st on parent: a hash of the parent's id
// and the step, so that a changed step or ancestor gives a new id and an
// unchanged chain is found again.
func stepID(parent string, spec *Spec, st Step) string {
	b, _ := json.Marshal(struct {
		Parent, Rootfs string
		Chroot         bool
		Step           Step
	}{parent, spec.Rootfs, spec.Chroot, st})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}
