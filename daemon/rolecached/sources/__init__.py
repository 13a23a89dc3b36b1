"""Where source credentials and codes come from: AWS config profiles, SSO sign-ins, requests
waiting for an MFA code, and the files they were read from."""
