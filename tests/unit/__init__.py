"""Tests of pure logic, in this process: no server, no child process."""
