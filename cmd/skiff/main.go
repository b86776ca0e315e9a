// Command skiff is the single Skiff binary: `skiff server` runs a master,
// `skiff cluster` inspects and changes the set of masters.
package main

import (
	// First: silences package-initialisation logging in `skiff init`
	// (a container's process), see the package.
	_ "early.skiff.io/quietinit"

	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skiff-io/skiff/agent/supervisor"
	"github.com/skiff-io/skiff/runtime/libcontainer"
)

func main() {
	// `skiff init` (container init) and `skiff shim` (per-container shim)
	// are re-executions by the runtime; they never return.
	libcontainer.InitIfRequested()
	if err := newRootCommand().Execute(); err != nil {
		var ec exitCodeError
		if errors.As(err, &ec) {
			os.Exit(ec.code)
		}
		fmt.Fprintln(os.Stderr, "Error:", err)
		var pe permanentError
		if errors.As(err, &pe) {
			os.Exit(supervisor.ExitNoRestart) // the supervisor does not restart it
		}
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	var logLevel string
	root := &cobra.Command{
		Use:           "skiff",
		Short:         "Skiff: a Kubernetes-compatible container orchestrator in one binary",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})))
			return nil
		},
	}
	// --version prints what `skiff version` prints.
	var vb strings.Builder
	printVersion(&vb)
	root.SetVersionTemplate(vb.String())
	root.PersistentFlags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(newServerCommand(), newAgentCommand(), newClusterCommand(), newImageCommand(), newDemoImageCommand(),
		newServicesCommand(), newVersionCommand(), newTokenCommand(), newSecretsEncryptCommand(),
		newWitnessCommand(), newMetricsCommand(), newLogsCommand(), newDashboardCommand())
	root.AddCommand(hostCommands()...)
	return root
}
