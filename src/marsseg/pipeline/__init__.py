"""The run under one budget: stages, post-processing, budget, report, run figures, the demo."""
