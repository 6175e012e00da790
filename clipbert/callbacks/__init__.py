"""Every callback of a training run, in one home: what a run logs about itself, what makes a
killed run resume exactly, what each checkpoint records, the curves drawn at the end, the
summary of a sweep, and a clean exit for the processes of a distributed run."""
