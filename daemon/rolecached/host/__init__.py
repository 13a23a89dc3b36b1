"""What the daemon asks of this machine: peers of a connection, its interfaces, process names,
hardening, the service manager, desktop notifications. Imports nothing of the daemon."""
