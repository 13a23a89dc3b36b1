"""Tests of the daemon's listeners and apps in this process, on a fake STS and clock."""
