package registry

import (
	"fmt"
	"time"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/util/shufflesharding"
)

// PriorityLevelConfigurations (flowcontrol.apiserver.k8s.io/v1, with
// status): see flowcontrol.go.
func priorityLevelConfigurationKind() *Kind {
	return &Kind{
		GVK:           flowcontrolv1.SchemeGroupVersion.WithKind("PriorityLevelConfiguration"),
		Resource:      "prioritylevelconfigurations",
		HasStatus:     true,
		HasGeneration: true,
		newObject:     func() runtime.Object { return &flowcontrolv1.PriorityLevelConfiguration{} },
		newList:       func() runtime.Object { return &flowcontrolv1.PriorityLevelConfigurationList{} },
		prepareForCreate: func(obj runtime.Object) {
			obj.(*flowcontrolv1.PriorityLevelConfiguration).Status = flowcontrolv1.PriorityLevelConfigurationStatus{}
		},
		defaults: defaultPriorityLevel,
		validate: func(obj runtime.Object) field.ErrorList {
			pl := obj.(*flowcontrolv1.PriorityLevelConfiguration)
			sp := field.NewPath("spec")
			errs := validatePriorityLevelSpec(pl.Name, &pl.Spec, sp)
			if mand, ok := mandatoryPriorityLevels[pl.Name]; ok {
				// The exempt level's spec.exempt may be changed; nothing else.
				want, have := &mand.Spec, pl.Spec.DeepCopy()
				msg := "spec of '%s' must equal the fixed value"
				if pl.Name == flowcontrolv1.PriorityLevelConfigurationNameExempt {
					have.Exempt = want.Exempt
					msg = "spec of '%s' except the 'spec.exempt' field must equal the fixed value"
				}
				if !apiequality.Semantic.DeepEqual(want, have) {
					errs = append(errs, field.Invalid(sp, pl.Spec, fmt.Sprintf(msg, pl.Name)))
				}
			}
			return append(errs, validatePriorityLevelStatus(&pl.Status)...)
		},
		validateStatus: func(obj runtime.Object) field.ErrorList {
			return validatePriorityLevelStatus(&obj.(*flowcontrolv1.PriorityLevelConfiguration).Status)
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Type", "string", flowcontrolv1.PriorityLevelConfigurationSpec{}.SwaggerDoc()["type"], 0),
			col("NominalConcurrencyShares", "string", flowcontrolv1.LimitedPriorityLevelConfiguration{}.SwaggerDoc()["nominalConcurrencyShares"], 0),
			col("Queues", "string", flowcontrolv1.QueuingConfiguration{}.SwaggerDoc()["queues"], 0),
			col("HandSize", "string", flowcontrolv1.QueuingConfiguration{}.SwaggerDoc()["handSize"], 0),
			col("QueueLengthLimit", "string", flowcontrolv1.QueuingConfiguration{}.SwaggerDoc()["queueLengthLimit"], 0),
			ageColumn,
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			pl := obj.(*flowcontrolv1.PriorityLevelConfiguration)
			var shares, queues, hand, limit any = "<none>", "<none>", "<none>", "<none>"
			if l := pl.Spec.Limited; l != nil {
				if l.NominalConcurrencyShares != nil {
					shares = int64(*l.NominalConcurrencyShares)
				}
				if q := l.LimitResponse.Queuing; q != nil {
					queues, hand, limit = int64(q.Queues), int64(q.HandSize), int64(q.QueueLengthLimit)
				}
			}
			return []any{pl.Name, string(pl.Spec.Type), shares, queues, hand, limit, Age(pl.CreationTimestamp, now)}
		},
	}
}

// defaultPriorityLevel fills flowcontrol/v1's defaults.
func defaultPriorityLevel(obj runtime.Object) {
	s := &obj.(*flowcontrolv1.PriorityLevelConfiguration).Spec
	set := func(p **int32, v int32) {
		if *p == nil {
			*p = &v
		}
	}
	if e := s.Exempt; e != nil {
		set(&e.NominalConcurrencyShares, 0)
		set(&e.LendablePercent, 0)
	}
	if l := s.Limited; l != nil {
		set(&l.NominalConcurrencyShares, 30)
		set(&l.LendablePercent, 0)
		if q := l.LimitResponse.Queuing; q != nil {
			if q.HandSize == 0 {
				q.HandSize = 8
			}
			if q.Queues == 0 {
				q.Queues = 64
			}
			if q.QueueLengthLimit == 0 {
				q.QueueLengthLimit = 50
			}
		}
	}
}

func validatePriorityLevelSpec(name string, s *flowcontrolv1.PriorityLevelConfigurationSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if (name == flowcontrolv1.PriorityLevelConfigurationNameExempt) != (s.Type == flowcontrolv1.PriorityLevelEnablementExempt) {
		errs = append(errs, field.Invalid(p.Child("type"), s.Type, "must be 'Exempt' if and only if `name` is 'exempt'"))
	}
	percent := func(v *int32, fp *field.Path) {
		if v != nil && (*v < 0 || *v > 100) {
			errs = append(errs, field.Invalid(fp, *v, "must be between 0 and 100, inclusive"))
		}
	}
	switch s.Type {
	case flowcontrolv1.PriorityLevelEnablementExempt:
		if s.Limited != nil {
			errs = append(errs, field.Forbidden(p.Child("limited"), "must be nil if the type is not Limited"))
		}
		if e := s.Exempt; e != nil {
			if e.NominalConcurrencyShares != nil && *e.NominalConcurrencyShares < 0 {
				errs = append(errs, field.Invalid(p.Child("exempt", "nominalConcurrencyShares"), *e.NominalConcurrencyShares, "must be a non-negative integer"))
			}
			percent(e.LendablePercent, p.Child("exempt", "lendablePercent"))
		}
	case flowcontrolv1.PriorityLevelEnablementLimited:
		if s.Exempt != nil {
			errs = append(errs, field.Forbidden(p.Child("exempt"), "must be nil if the type is Limited"))
		}
		l := s.Limited
		if l == nil {
			errs = append(errs, field.Required(p.Child("limited"), "must not be empty when type is Limited"))
			break
		}
		lp := p.Child("limited")
		if l.NominalConcurrencyShares != nil && *l.NominalConcurrencyShares < 0 {
			errs = append(errs, field.Invalid(lp.Child("nominalConcurrencyShares"), *l.NominalConcurrencyShares, "must be a non-negative integer"))
		}
		errs = append(errs, validateLimitResponse(&l.LimitResponse, lp.Child("limitResponse"))...)
		percent(l.LendablePercent, lp.Child("lendablePercent"))
		if b := l.BorrowingLimitPercent; b != nil && *b < 0 {
			errs = append(errs, field.Invalid(lp.Child("borrowingLimitPercent"), *b, "if specified, must be a non-negative integer"))
		}
	default:
		errs = append(errs, field.NotSupported(p.Child("type"), s.Type, []string{string(flowcontrolv1.PriorityLevelEnablementExempt), string(flowcontrolv1.PriorityLevelEnablementLimited)}))
	}
	return errs
}

func validateLimitResponse(r *flowcontrolv1.LimitResponse, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch r.Type {
	case flowcontrolv1.LimitResponseTypeReject:
		if r.Queuing != nil {
			errs = append(errs, field.Forbidden(p.Child("queuing"), "must be nil if limited.limitResponse.type is not Limited"))
		}
	case flowcontrolv1.LimitResponseTypeQueue:
		q := r.Queuing
		qp := p.Child("queuing")
		if q == nil {
			errs = append(errs, field.Required(qp, "must not be empty if limited.limitResponse.type is Limited"))
			break
		}
		if q.QueueLengthLimit <= 0 {
			errs = append(errs, field.Invalid(qp.Child("queueLengthLimit"), q.QueueLengthLimit, "must be positive"))
		}
		if q.Queues <= 0 {
			errs = append(errs, field.Invalid(qp.Child("queues"), q.Queues, "must be positive"))
		} else if q.Queues > maxQueues {
			errs = append(errs, field.Invalid(qp.Child("queues"), q.Queues, fmt.Sprintf("must not be greater than %d", maxQueues)))
		}
		switch {
		case q.HandSize <= 0:
			errs = append(errs, field.Invalid(qp.Child("handSize"), q.HandSize, "must be positive"))
		case q.HandSize > q.Queues:
			errs = append(errs, field.Invalid(qp.Child("handSize"), q.HandSize, fmt.Sprintf("should not be greater than queues (%d)", q.Queues)))
		case shufflesharding.RequiredEntropyBits(int(q.Queues), int(q.HandSize)) > shufflesharding.MaxHashBits:
			errs = append(errs, field.Invalid(qp.Child("handSize"), q.HandSize, fmt.Sprintf("required entropy bits of deckSize %d and handSize %d should not be greater than %d",
				q.Queues, q.HandSize, shufflesharding.MaxHashBits)))
		}
	default:
		errs = append(errs, field.NotSupported(p.Child("type"), r.Type, []string{string(flowcontrolv1.LimitResponseTypeQueue), string(flowcontrolv1.LimitResponseTypeReject)}))
	}
	return errs
}

func validatePriorityLevelStatus(s *flowcontrolv1.PriorityLevelConfigurationStatus) field.ErrorList {
	var types []string
	for _, c := range s.Conditions {
		types = append(types, string(c.Type))
	}
	return validateConditionTypes(types, field.NewPath("status", "conditions"))
}
