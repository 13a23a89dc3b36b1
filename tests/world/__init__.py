"""Tests that need more of the machine: docker, systemd containers, a second uid, network
namespaces."""
