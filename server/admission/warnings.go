package admission

import "context"

type warningsKey struct{}

// WithWarnings returns a context in which the plugins' warnings for the
// client (PodSecurity's "would violate PodSecurity …") go to add; the API
// server sets them as Warning headers, which kubectl prints.
func WithWarnings(ctx context.Context, add func(msg string)) context.Context {
	return context.WithValue(ctx, warningsKey{}, add)
}

// warn passes msg to the request's warning sink, if it has one.
func warn(ctx context.Context, msg string) {
	if add, ok := ctx.Value(warningsKey{}).(func(string)); ok && add != nil {
		add(msg)
	}
}
