"""The rolecache commands beyond asking for credentials, one module each."""
