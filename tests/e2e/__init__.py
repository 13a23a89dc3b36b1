"""Tests of real processes as this user: the daemon, moto's server, the client, CLIs, SDKs and
shells."""
