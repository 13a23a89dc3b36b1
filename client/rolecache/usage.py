"""The client's help texts: `rolecache --help`, and each command's `--help`.

Imported only when help is asked for: a shell's cache hit never pays for these strings.
"""

USAGE_HEAD = """\
usage: rolecache COMMAND [OPTIONS]

Assumed-role AWS credentials from the rolecached daemon's memory.

commands:
  env      print export lines: eval "$(rolecache env --role-arn ARN --role-session-name NAME)"
  process  print credential_process JSON (for credential_process = rolecache process ...)
  exec     run a command with the credentials in its environment: rolecache exec ... -- CMD
  list     show cached sessions (--json for scripts)
  forget   drop a cached session (same selector options), or --all
  status   show the daemon's version, uptime and counters
  mfa [CODE]  give an MFA code to the requests waiting for one (no terminal: IDEs, CDK);
           --list shows them
  sts assume-role ...     drop-in for `aws sts assume-role` (same options and output)
  aws ARGS ...            for an `aws` shell function: sts assume-role (after the CLI's
                          global options) is served as above, anything else runs `aws ARGS`
  shell-init bash|zsh|fish  shell functions (rolecache-assume PROFILE) and completion
  endpoint add|list|remove|rotate|env ...   serve a role to SDKs and containers on
           loopback (ECS- and IMDSv2-style); exec --endpoint NAME [--imds] -- CMD uses one
  docker setup [--network NAME] [--print]   the docker network (gateway 169.254.170.2)
           whose containers reach the container endpoint
  login PROFILE | --sso-session NAME   sign in to IAM Identity Center (SSO), as
           `aws sso login` does; the token goes where botocore and the AWS CLI read it

"""
SELECTOR_HELP = """\
selector options (env, process, exec, forget):
  --profile NAME               a role profile from ~/.aws/config (or AWS_CONFIG_FILE);
                               other options given with it override the profile's values
  --role-arn ARN               role to assume (required without --profile)
  --role-session-name NAME     session name, 2-64 of [A-Za-z0-9_+=,.@-] (required with --role-arn)
  --duration-seconds N         session length, 900-43200 (default 3600)
  --external-id ID             external id the role's trust policy asks for
  --source-profile NAME        profile whose credentials assume the role (default chain if absent)
  --region REGION              STS region (regional endpoint)
  --policy JSON|file://PATH    session policy
  --policy-arns ARN ...        managed session policies (arn=ARN accepted too)
  --tags Key=K,Value=V ...     session tags
  --transitive-tag-keys K ...  tags that pass on through role chaining
  --source-identity ID         source identity to set on the session
  --min-ttl SECONDS            least remaining lifetime to accept (default 300; process: 960)
  --serial-number ARN          MFA device the role needs (else mfa_serial of the profile)
  --token-code CODE|-          the device's current code; - reads it from stdin, and
                               ROLECACHE_TOKEN_CODE is used when the daemon asks for one
                               (a code on the command line is visible to other users);
                               else you are asked on the terminal
  --mfa-wait SECONDS           with no terminal, wait up to SECONDS (max 900) for a code
                               given with `rolecache mfa` (process: 300; others: 0)

"""
USAGE_TAIL = """\
other options:
  --shell sh|bash|zsh|fish|powershell   export syntax for env (default bash)
  --sandbox                    talk to the sandbox daemon (fake STS); also ROLECACHE_SANDBOX=1
  --version, --help

exit status: 0 ok, 1 STS or daemon error, 2 bad usage or invalid request,
3 daemon unreachable; exec exits with the command's status.
"""
USAGE = USAGE_HEAD + SELECTOR_HELP + USAGE_TAIL

# Each command's own help: its usage line, what it does, and whether the selector options
# apply.
COMMAND_HELP = {
    "env": (
        "rolecache env SELECTOR [--shell sh|bash|zsh|fish|powershell]",
        'Print export lines for the role\'s credentials: eval "$(rolecache env ...)".',
        True,
    ),
    "process": (
        "rolecache process SELECTOR",
        "Print credential_process JSON (credential_process = rolecache process --profile NAME).",
        True,
    ),
    "exec": (
        "rolecache exec SELECTOR -- CMD [ARG ...]\n"
        "       rolecache exec --endpoint NAME [--imds] -- CMD [ARG ...]",
        "Run CMD with the credentials (or an endpoint's variables) in its environment.",
        True,
    ),
    "list": ("rolecache list [--json]", "Show the cached sessions; never a secret.", False),
    "forget": ("rolecache forget SELECTOR | --all", "Drop a cached session, or all.", True),
    "mfa": (
        "rolecache mfa [CODE | --code CODE|-] [--device SERIAL] | --list [--json]",
        "Give an MFA code to the requests waiting for one (asked on the terminal when not\n"
        "given); one code serves every waiting request of the device it can.",
        False,
    ),
    "status": (
        "rolecache status",
        "Show the daemon's version, uptime and counters (exit 3 if it is not running).",
        False,
    ),
}


def command_help(command: str) -> str:
    """`rolecache COMMAND --help`: that command's usage, and the selector options if it
    takes them."""
    usage, what, selector = COMMAND_HELP[command]
    return f"usage: {usage}\n\n{what}\n" + (f"\n{SELECTOR_HELP}" if selector else "")
