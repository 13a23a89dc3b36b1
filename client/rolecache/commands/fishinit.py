"""The fish half of `rolecache shell-init`: fish's syntax shares nothing with bash/zsh."""

from rolecache.cmdline import SUBCOMMANDS

FISH_SUBCOMMANDS = "\n".join(
    f"complete -c rolecache -f -n '__fish_seen_subcommand_from {command}; and test (count "
    f"(commandline -opc)) -eq 2' -a '{' '.join(words)}'"
    for command, words in SUBCOMMANDS.items()
)
FISH_CONFIG = "(set -q AWS_CONFIG_FILE; and echo $AWS_CONFIG_FILE; or echo $HOME/.aws/config)"


# fish has no clock variable: `path mtime` (fish 3.5+) gives a file's time and, with
# --relative, the seconds since, and their sum is the time now, both builtins. Older fish
# falls back to `date +%s`, a process at each prompt.
FISH = """\
# rolecache shell integration (fish): rolecache shell-init fish | source
function rolecache-assume --description 'export a role profile from rolecache, kept fresh'
    if test "$argv[1]" = --off
        __rolecache_off; return 0
    end
    if test (count $argv) -lt 1
        echo "usage: rolecache-assume PROFILE [options] | rolecache-assume --off" >&2; return 2
    end
    __rolecache_export $argv; or return
    set -g __rolecache_args $argv
    set -g __rolecache_profile $argv[1]
    set -g __rolecache_floor {FLOOR}
    set -g __rolecache_retry 0
    set -l prev
    for arg in $argv
        test "$prev" = --min-ttl; and set __rolecache_floor $arg
        string match -q -- '--min-ttl=*' $arg; and set __rolecache_floor (string sub -s 11 -- $arg)
        set prev $arg
    end
    function __rolecache_fresh --on-event fish_prompt --on-event fish_preexec
        set -l rc $status
        __rolecache_now
        if test $__rolecache_t -ge (math $ROLECACHE_EXPIRES_AT - $__rolecache_floor)
            and test $__rolecache_t -ge $__rolecache_retry
            if not __rolecache_export $__rolecache_args
                set -g __rolecache_retry (math $__rolecache_t + {RETRY})
                echo "rolecache-assume: could not renew $__rolecache_profile;" \\
                    "trying again in a minute" >&2
            end
        end
        return $rc
    end
end
function __rolecache_export
    set -l out (command rolecache env --shell fish --profile $argv)
    or return
    printf '%s\\n' $out | source
end
if builtin -n | string match -q path
    function __rolecache_now
        set -g __rolecache_t (math (path mtime /) + (path mtime --relative /))
    end
else
    function __rolecache_now
        set -g __rolecache_t (date +%s)
    end
end
function __rolecache_off
    functions -e __rolecache_fresh
    set -e {EXPORTED} ROLECACHE_EXPIRES_AT
    set -e __rolecache_args __rolecache_profile __rolecache_floor __rolecache_retry
end
# For fish_prompt: `profile:42m` (minutes left), nothing when no profile is assumed.
function rolecache_prompt
    set -q __rolecache_profile; or return 0
    __rolecache_now
    set -l left (math --scale 0 "max(0, ($ROLECACHE_EXPIRES_AT - $__rolecache_t) / 60)")
    printf '%s:%sm' $__rolecache_profile $left
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


def fish_script(
    floor: int, retry: int, exported: str, sed_profiles: str, commands: str, options: str
) -> str:
    """The fish rc-file snippet, from the shared renewal settings and completion words."""
    return FISH.format(
        FLOOR=floor,
        RETRY=retry,
        EXPORTED=exported,
        SED_PROFILES=sed_profiles,
        COMMANDS=commands,
        OPTIONS=options,
        FISH_SUBCOMMANDS=FISH_SUBCOMMANDS,
        FISH_CONFIG=FISH_CONFIG,
    )
