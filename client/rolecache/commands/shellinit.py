"""`rolecache shell-init bash|zsh|fish`: functions and completion for the user's rc file.

    eval "$(rolecache shell-init bash)"     # in ~/.bashrc (zsh: the same with zsh)
    rolecache shell-init fish | source      # in ~/.config/fish/config.fish

gives `rolecache-assume PROFILE [options]`, which exports a role profile's credentials into
the current shell, and tab completion of commands, options and profile names.
"""

import sys

from rolecache import protocol
from rolecache.cmdline import SUBCOMMANDS, completion_words
from rolecache.commands.fishinit import fish_script
from rolecache.shells import ENV_NAMES

USAGE = "usage: rolecache shell-init bash|zsh|fish\n"
HELP = """
Print shell functions and completion for your rc file:

    eval "$(rolecache shell-init bash)"     # in ~/.bashrc (zsh: the same with zsh)
    rolecache shell-init fish | source      # in ~/.config/fish/config.fish

They give `rolecache-assume PROFILE [options]`, which exports a role profile's credentials
into the current shell, and tab completion of commands, options and profile names.
"""

# From the parsers' own tables, so every command and option is offered.
COMMANDS, OPTIONS = completion_words()
# bash: the case arms that offer a command's own next words (`endpoint add`, `sts
# assume-role`) right after it.
BASH_SUBCOMMANDS = "\n".join(
    f"            {command}) _rolecache_reply {' '.join(words)}; return ;;"
    for command, words in SUBCOMMANDS.items()
)
# Profile names from the config file the AWS CLI would read: [profile NAME] and [default].
# Only names of plain characters are offered: a config file is not always the user's own
# work (a shared or generated one), and a completion must never be a way to run what a
# name spells. Names with other characters still work when typed.
PROFILE_CHARS = "A-Za-z0-9_.@:+=,-"
SED_PROFILES = (
    f"sed -n -e 's/^\\[profile  *\\([{PROFILE_CHARS}]*\\)\\]$/\\1/p' "
    "-e 's/^\\[\\(default\\)\\]$/\\1/p'"
)
PROFILES_SH = SED_PROFILES + ' "${AWS_CONFIG_FILE:-$HOME/.aws/config}" 2>/dev/null'

# rolecache-assume keeps what it exported fresh. A hook at each prompt and before each
# command line compares ROLECACHE_EXPIRES_AT (epoch seconds, from `rolecache env`) with the
# shell's own clock, a builtin in each shell, so a prompt with nothing due starts no
# process; under FLOOR seconds left (the --min-ttl given, else the client's default) it
# exports again through `rolecache env`, with the same options. A failed renewal is retried
# a minute later, not at every prompt.
FLOOR = protocol.DEFAULT_MIN_TTL
RETRY = 60
# The AWS_* variables `rolecache env` exports, and its non-exported expiry.
EXPORTED = " ".join(name for name, _ in ENV_NAMES)

# Completions are built by comparing each candidate with the typed prefix, never with
# `compgen -W "$(...)"`: compgen expands its word list, so a profile named `$(cmd)` or
# `` `cmd` `` in the config file would run cmd on every Tab.
BASH = f"""\
# rolecache shell integration (bash/zsh): eval "$(rolecache shell-init bash)"
rolecache-assume() {{
    if [ "$1" = "--off" ]; then _rolecache_off; return 0; fi
    if [ -z "$1" ]; then
        echo "usage: rolecache-assume PROFILE [options] | rolecache-assume --off" >&2; return 2
    fi
    _rolecache_export "$@" || return $?
    _rolecache_args=("$@")
    _rolecache_profile=$1
    _rolecache_floor={FLOOR}
    _rolecache_retry=0
    local arg prev=
    for arg in "$@"; do
        case "$prev" in --min-ttl) _rolecache_floor=$arg ;; esac
        case "$arg" in --min-ttl=*) _rolecache_floor=${{arg#--min-ttl=}} ;; esac
        prev=$arg
    done
    _rolecache_hook_on
}}
_rolecache_export() {{
    local out
    out="$(command rolecache env --profile "$@")" || return $?
    eval "$out"
}}
# The hook: returns the status it was called with, so $? in the prompt is the command's.
_rolecache_fresh() {{
    local rc=$?
    if [ -n "${{_rolecache_profile-}}" ]; then
        _rolecache_now
        if (( _rolecache_t + _rolecache_floor > ${{ROLECACHE_EXPIRES_AT:-0}} &&
              _rolecache_t >= _rolecache_retry )); then
            if ! _rolecache_export "${{_rolecache_args[@]}}"; then
                _rolecache_retry=$(( _rolecache_t + {RETRY} ))
                echo "rolecache-assume: could not renew $_rolecache_profile;" \\
                    "trying again in a minute" >&2
            fi
        fi
    fi
    return $rc
}}
_rolecache_off() {{
    _rolecache_hook_off
    unset {EXPORTED} ROLECACHE_EXPIRES_AT
    unset _rolecache_args _rolecache_profile _rolecache_floor _rolecache_retry
}}
# For PS1: `profile:42m` (minutes left), nothing when no profile is assumed.
rolecache_prompt() {{
    [ -n "${{_rolecache_profile-}}" ] || return 0
    _rolecache_now
    local left=$(( (${{ROLECACHE_EXPIRES_AT:-0}} - _rolecache_t) / 60 ))
    if (( left < 0 )); then left=0; fi
    printf '%s:%sm' "$_rolecache_profile" "$left"
}}
_rolecache_profiles() {{ {PROFILES_SH}; }}
_rolecache_reply() {{
    local word
    COMPREPLY=()
    for word in "$@"; do
        [[ $word == "$cur"* ]] && COMPREPLY+=("$word")
    done
    return 0
}}
_rolecache_reply_profiles() {{
    local name
    local -a names
    while IFS= read -r name; do
        names+=("$name")
    done < <(_rolecache_profiles)
    _rolecache_reply "${{names[@]}}"
}}
_rolecache_complete() {{
    local cur prev
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    if [ "$COMP_CWORD" -eq 1 ]; then
        _rolecache_reply {COMMANDS}
        return 0
    fi
    if [ "$COMP_CWORD" -eq 2 ]; then
        case "$prev" in
{BASH_SUBCOMMANDS}
        esac
    fi
    if [ "$prev" = "--profile" ] || [ "$prev" = "--source-profile" ]; then
        _rolecache_reply_profiles
    else
        _rolecache_reply {OPTIONS}
    fi
}}
_rolecache_assume_complete() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}"
    _rolecache_reply_profiles
}}
"""

# bash: the clock is printf's %(%s)T (bash 4.2+). The prompt hook is appended to
# PROMPT_COMMAND, a string or (bash 5.1+) an array, never replacing what is there; the check
# before a command is a DEBUG trap, set only when no other DEBUG trap is (one would replace
# it), and it always succeeds so that `shopt -s extdebug` never skips a command for it. A
# function sees and changes the shell's DEBUG trap only when it and its callers have the
# trace attribute (-t); the trap then runs inside them too, where it does nothing.
BASH_HOOKS = r"""_rolecache_now() { printf -v _rolecache_t '%(%s)T' -1; }
_rolecache_debug() {
    case ${FUNCNAME[1]-} in rolecache-assume | _rolecache_*) ;; *) _rolecache_fresh ;; esac
    return 0
}
_rolecache_hook_on() {
    if [[ ${PROMPT_COMMAND@a} == *a* ]]; then
        local cmd
        for cmd in "${PROMPT_COMMAND[@]}"; do
            [[ $cmd == _rolecache_fresh ]] && break
        done
        [[ $cmd == _rolecache_fresh ]] || PROMPT_COMMAND+=(_rolecache_fresh)
    else
        case $'\n'"${PROMPT_COMMAND-}"$'\n' in
            *$'\n'_rolecache_fresh$'\n'*) ;;
            *) PROMPT_COMMAND="${PROMPT_COMMAND:+$PROMPT_COMMAND$'\n'}_rolecache_fresh" ;;
        esac
    fi
    [[ -n $(trap -p DEBUG) ]] || trap _rolecache_debug DEBUG
}
_rolecache_hook_off() {
    if [[ ${PROMPT_COMMAND@a} == *a* ]]; then
        local cmd
        local -a kept=()
        for cmd in "${PROMPT_COMMAND[@]}"; do
            [[ $cmd == _rolecache_fresh ]] || kept+=("$cmd")
        done
        PROMPT_COMMAND=("${kept[@]}")
    else
        local pc=$'\n'"${PROMPT_COMMAND-}"$'\n'
        pc=${pc//$'\n'_rolecache_fresh$'\n'/$'\n'}
        pc=${pc#$'\n'}
        PROMPT_COMMAND=${pc%$'\n'}
    fi
    [[ $(trap -p DEBUG) != "trap -- '_rolecache_debug' DEBUG" ]] || trap - DEBUG
}
declare -ft rolecache-assume _rolecache_off _rolecache_hook_on _rolecache_hook_off
"""

# zsh: the clock is EPOCHSECONDS from the zsh/datetime module; the hooks are precmd and
# preexec functions.
ZSH_HOOKS = r"""zmodload zsh/datetime 2>/dev/null
_rolecache_now() { _rolecache_t=$EPOCHSECONDS; }
_rolecache_hook_on() {
    (( ${precmd_functions[(Ie)_rolecache_fresh]} )) || precmd_functions+=(_rolecache_fresh)
    (( ${preexec_functions[(Ie)_rolecache_fresh]} )) || preexec_functions+=(_rolecache_fresh)
}
_rolecache_hook_off() {
    precmd_functions=(${precmd_functions:#_rolecache_fresh})
    preexec_functions=(${preexec_functions:#_rolecache_fresh})
}
"""

BASH_COMPLETE = """\
complete -F _rolecache_complete rolecache
complete -F _rolecache_assume_complete rolecache-assume
"""

ZSH_COMPLETE = """\
autoload -U +X compinit 2>/dev/null && { (( $+functions[compdef] )) || compinit; }
autoload -U +X bashcompinit && bashcompinit
complete -F _rolecache_complete rolecache
complete -F _rolecache_assume_complete rolecache-assume
"""


def script(shell: str) -> str:
    """The rc-file snippet for `shell`."""
    if shell == "fish":
        return fish_script(FLOOR, RETRY, EXPORTED, SED_PROFILES, COMMANDS, OPTIONS)
    if shell == "zsh":
        return BASH + ZSH_HOOKS + ZSH_COMPLETE
    return BASH + BASH_HOOKS + BASH_COMPLETE


def run(args: list[str]) -> int:
    """Print the snippet for the shell named in `args`; 2 for anything else."""
    if args in (["--help"], ["-h"], ["help"]):
        sys.stdout.write(USAGE + HELP)
        return 0
    if len(args) != 1 or args[0] not in ("bash", "zsh", "fish"):
        sys.stderr.write(USAGE)
        return 2
    sys.stdout.write(script(args[0]))
    return 0
