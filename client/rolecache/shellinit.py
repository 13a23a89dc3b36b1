"""`rolecache shell-init bash|zsh|fish`: functions and completion for the user's rc file.

    eval "$(rolecache shell-init bash)"     # in ~/.bashrc (zsh: the same with zsh)
    rolecache shell-init fish | source      # in ~/.config/fish/config.fish

gives `rolecache-assume PROFILE [options]`, which exports a role profile's credentials into
the current shell, and tab completion of commands, options and profile names.
"""

import sys

from rolecache.cmdline import SUBCOMMANDS, completion_words

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
# assume-role`) right after it; fish: one completion per command.
BASH_SUBCOMMANDS = "\n".join(
    f"            {command}) _rolecache_reply {' '.join(words)}; return ;;"
    for command, words in SUBCOMMANDS.items()
)
FISH_SUBCOMMANDS = "\n".join(
    f"complete -c rolecache -f -n '__fish_seen_subcommand_from {command}; and test (count "
    f"(commandline -opc)) -eq 2' -a '{' '.join(words)}'"
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
FISH_CONFIG = "(set -q AWS_CONFIG_FILE; and echo $AWS_CONFIG_FILE; or echo $HOME/.aws/config)"

# Completions are built by comparing each candidate with the typed prefix, never with
# `compgen -W "$(...)"`: compgen expands its word list, so a profile named `$(cmd)` or
# `` `cmd` `` in the config file would run cmd on every Tab.
BASH = f"""\
# rolecache shell integration (bash/zsh): eval "$(rolecache shell-init bash)"
rolecache-assume() {{
    if [ -z "$1" ]; then echo "usage: rolecache-assume PROFILE [options]" >&2; return 2; fi
    local out
    out="$(command rolecache env --profile "$@")" || return $?
    eval "$out"
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

FISH = f"""\
# rolecache shell integration (fish): rolecache shell-init fish | source
function rolecache-assume --description 'export a role profile from rolecache'
    if test (count $argv) -lt 1
        echo "usage: rolecache-assume PROFILE [options]" >&2; return 2
    end
    command rolecache env --shell fish --profile $argv | source
end
function __rolecache_profiles
    {SED_PROFILES} {FISH_CONFIG} 2>/dev/null
end
complete -c rolecache -f -n '__fish_use_subcommand' -a '{COMMANDS}'
{FISH_SUBCOMMANDS}
complete -c rolecache -f -l profile -l source-profile -r -a '(__rolecache_profiles)'
complete -c rolecache -f -a '{OPTIONS}'
complete -c rolecache-assume -f -a '(__rolecache_profiles)'
"""


def script(shell: str) -> str:
    """The rc-file snippet for `shell`."""
    if shell == "fish":
        return FISH
    return BASH + (ZSH_COMPLETE if shell == "zsh" else BASH_COMPLETE)


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
