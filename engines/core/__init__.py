"""Shared plumbing: settings and workspace, jobs, audio I/O, devices, errors."""
