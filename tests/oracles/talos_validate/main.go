// Command talos-validate is a test oracle: it loads a Talos machine config with the config
// loader of the Talos release it is built against (strict decoding: unknown keys are errors)
// and validates it for the cloud runtime mode, as `talosctl validate --mode cloud --strict`.
//
// Usage: talos-validate FILE (or - for stdin). It prints one JSON object on stdout:
// {"talos": "<machinery version>", "loaded": bool, "errors": [...], "warnings": [...]}
// and exits 0 when the config loads and validates, 1 when it does not, 2 on a usage error.
//
// Built once per supported Talos minor by scripts/toolchain.py (group "oracles").
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/validation"
)

const machinery = "github.com/siderolabs/talos/pkg/machinery"

// cloudMode is Talos' "cloud" runtime mode (a cloud VM booted from a disk image): no install
// step, not in a container.
type cloudMode struct{}

func (cloudMode) String() string        { return "cloud" }
func (cloudMode) RequiresInstall() bool { return false }
func (cloudMode) InContainer() bool     { return false }

type result struct {
	Talos    string   `json:"talos"`
	Loaded   bool     `json:"loaded"`
	Errors   []string `json:"errors"`
	Warnings []string `json:"warnings"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: talos-validate FILE|-")
		os.Exit(2)
	}
	source, err := read(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	out := result{Talos: machineryVersion(), Errors: []string{}, Warnings: []string{}}
	config, err := configloader.NewFromBytes(source)
	if err == nil {
		out.Loaded = true
		var warnings []string
		warnings, err = config.Validate(cloudMode{}, validation.WithLocal(), validation.WithStrict())
		out.Warnings = append(out.Warnings, warnings...)
	}
	out.Errors = append(out.Errors, flatten(err)...)
	encoded, _ := json.Marshal(out)
	fmt.Println(string(encoded))
	if len(out.Errors) > 0 {
		os.Exit(1)
	}
}

func read(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(path)
}

// flatten lists every error a (multi)error carries, one message each.
func flatten(err error) []string {
	if err == nil {
		return nil
	}
	var wrapped interface{ WrappedErrors() []error }
	if errors.As(err, &wrapped) {
		var messages []string
		for _, inner := range wrapped.WrappedErrors() {
			messages = append(messages, flatten(inner)...)
		}
		return messages
	}
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		var messages []string
		for _, inner := range joined.Unwrap() {
			messages = append(messages, flatten(inner)...)
		}
		return messages
	}
	return []string{err.Error()}
}

func machineryVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == machinery {
				return dep.Version
			}
		}
	}
	return "unknown"
}
