"""Tests of the LLM provider layer."""
