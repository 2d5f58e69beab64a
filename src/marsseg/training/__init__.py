"""Loss and metric math, fitting one stage, multi-device training."""
