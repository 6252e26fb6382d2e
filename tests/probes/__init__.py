"""Probe engine and protocol tests."""
