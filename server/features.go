package server

import (
	"k8s.io/component-base/featuregate"
)

// HPAScaleToZero lets a HorizontalPodAutoscaler with an Object or External
// metric have minReplicas 0 (kube-apiserver's alpha gate of that name;
// off by default there and here).
const HPAScaleToZero featuregate.Feature = "HPAScaleToZero"

// NewFeatureGate returns the master's feature gates at their defaults;
// cmd adds its --feature-gates flag (kube-apiserver's syntax:
// Name=true,Name2=false).
func NewFeatureGate() featuregate.MutableFeatureGate {
	fg := featuregate.NewFeatureGate()
	if err := fg.Add(map[featuregate.Feature]featuregate.FeatureSpec{
		HPAScaleToZero: {Default: false, PreRelease: featuregate.Alpha},
	}); err != nil {
		// The specs are static; an error is a programming error.
		panic("server: feature gates: " + err.Error())
	}
	return fg
}

// featureEnabled reports a gate of cfg.FeatureGates (the defaults when
// nil).
func (c *Config) featureEnabled(f featuregate.Feature) bool {
	fg := c.FeatureGates
	if fg == nil {
		fg = NewFeatureGate()
	}
	return fg.Enabled(f)
}
