package shipper

import (
	"io"
	"log/slog"

	dto "github.com/prometheus/client_model/go"
)

func slogNew(tap *LogTap) *slog.Logger {
	return slog.New(tap.Handler(slog.NewTextHandler(io.Discard, nil)))
}

type dtoMetric struct{ Metric dto.Metric }

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
