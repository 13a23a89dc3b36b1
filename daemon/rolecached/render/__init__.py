"""Every output the daemon renders, so the client only copies bytes to stdout:

- credentials.py: the socket API's credentials answers (JSON, env lines per shell,
  credential_process JSON) and how one request picks among them;
- awscli.py and awstable.py: `aws sts assume-role`'s output, byte for byte, as AWS CLI v1 or
  v2 prints it (json, text, table, yaml, after --query);
- documents.py: the container endpoint's and IMDS's credentials documents.
"""
