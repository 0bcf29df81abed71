"""Tests of workflow graphs: spec, validation, compilation, scheduling, templates, policy."""
