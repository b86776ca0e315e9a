// Command build bundles the dashboard's TypeScript sources (../web/src,
// with ../web/node_modules) into ../dist with esbuild: app.js, app.css and
// index.html. Run by `go generate ./server/dashboard` (make ui). The output
// depends only on the sources and the pinned esbuild and npm packages:
// the same sources give the same bytes (no timestamps, no absolute paths,
// no source maps).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/evanw/esbuild/pkg/api"
)

func main() {
	web := flag.String("web", "web", "the sources' directory (package.json, index.html, src/)")
	out := flag.String("out", "dist", "the bundle's directory (replaced)")
	flag.Parse()
	if err := Build(*web, *out); err != nil {
		fmt.Fprintln(os.Stderr, "dashboard build:", err)
		os.Exit(1)
	}
}

// Build writes the bundle of the sources in web into out.
func Build(web, out string) error {
	if _, err := os.Stat(filepath.Join(web, "node_modules")); err != nil {
		return fmt.Errorf("%w (run npm ci in %s: make ui)", err, web)
	}
	res := api.Build(api.BuildOptions{
		EntryPointsAdvanced: []api.EntryPoint{
			{InputPath: "src/main.ts", OutputPath: "app"},
			{InputPath: "src/app.css", OutputPath: "app"},
		},
		AbsWorkingDir:     absOrDie(web),
		Bundle:            true,
		Write:             false,
		Outdir:            "out",
		Format:            api.FormatIIFE,
		Target:            api.ES2020,
		Platform:          api.PlatformBrowser,
		MinifyWhitespace:  true,
		MinifyIdentifiers: true,
		MinifySyntax:      true,
		LegalComments:     api.LegalCommentsEndOfFile,
		Charset:           api.CharsetUTF8,
		Sourcemap:         api.SourceMapNone,
		LogLevel:          api.LogLevelWarning,
		Loader:            map[string]api.Loader{".css": api.LoaderCSS},
	})
	if len(res.Errors) > 0 {
		msgs := api.FormatMessages(res.Errors, api.FormatMessagesOptions{Kind: api.ErrorMessage})
		return errors.New(fmt.Sprint(msgs))
	}
	if err := os.RemoveAll(out); err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, f := range res.OutputFiles {
		if err := os.WriteFile(filepath.Join(out, filepath.Base(f.Path)), f.Contents, 0o644); err != nil {
			return err
		}
	}
	index, err := os.ReadFile(filepath.Join(web, "index.html"))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "index.html"), index, 0o644)
}

func absOrDie(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		panic(err)
	}
	return a
}
