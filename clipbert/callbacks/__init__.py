"""Every callback of a training run, in one home: what a run logs about itself, what makes a
killed run resume exactly, what each checkpoint records, and the summary of a sweep."""
