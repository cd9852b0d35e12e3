"""The long-running process: the scheduler, its HTTP side and its metrics."""
