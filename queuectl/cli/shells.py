"""The completion scripts for bash, zsh and fish, and the classes that answer their requests.

Imported only when a shell asks or `queuectl completion` runs (`--help` builds the command,
not this): no other call pays for the scripts and classes."""

from __future__ import annotations

import os

from typer._click.shell_completion import CompletionItem, split_arg_string
from typer._completion_classes import BashComplete, FishComplete, ZshComplete
from typer.core import TyperCommand

PROG = "queuectl"
COMPLETE_VAR = "_QUEUECTL_COMPLETE"  # set by the scripts: complete_bash | complete_zsh | ...
LINE_VAR = "_TYPER_COMPLETE_ARGS"  # the command line up to the cursor (typer's name for it)
BREAKS_VAR = "_QUEUECTL_WORDBREAKS"  # bash's COMP_WORDBREAKS, which the bash script passes

# Our own scripts rather than typer's: bash gets the raw line (COMP_LINE) instead of
# COMP_WORDS, which bash splits at `:` and `=`, so `--db postgresql://h:5432/db` reached us
# as five words and a job id `report:today` as three; zsh's works sourced or autoloaded
# from $fpath; fish's asks once per TAB (not twice) and falls back to paths.
_BASH = r"""# queuectl completion for bash. Load it from ~/.bashrc:
#   eval "$(queuectl completion bash)"
%(complete_func)s() {
    local IFS=$'\n'
    COMPREPLY=( $(env %(autocomplete_var)s=complete_bash \
        _TYPER_COMPLETE_ARGS="${COMP_LINE:0:COMP_POINT}" \
        _QUEUECTL_WORDBREAKS="$COMP_WORDBREAKS" "$1" 2>/dev/null) )
    return 0
}
complete -o default -F %(complete_func)s %(prog_name)s
"""

_ZSH = r"""#compdef %(prog_name)s
# queuectl completion for zsh. Load it from ~/.zshrc, after compinit:
#   eval "$(queuectl completion zsh)"
# or save it as _queuectl in a directory of $fpath.
%(complete_func)s() {
  local reply
  reply="$(env %(autocomplete_var)s=complete_zsh _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" \
    %(prog_name)s 2>/dev/null)" || return 1
  eval "$reply"
}
if [[ "${zsh_eval_context[-1]}" == loadautofunc ]]; then
  %(complete_func)s "$@"
else
  compdef %(complete_func)s %(prog_name)s
fi
"""

_FISH = r"""# queuectl completion for fish. Save it:
#   queuectl completion fish > ~/.config/fish/completions/queuectl.fish
function %(complete_func)s
    set -l reply (env %(autocomplete_var)s=complete_fish _TYPER_COMPLETE_FISH_ACTION=get-args \
        _TYPER_COMPLETE_ARGS=(commandline -cp | string collect) %(prog_name)s 2>/dev/null)
    if test (count $reply) -gt 0
        printf '%%s\n' $reply
    else
        __fish_complete_path (commandline -ct)
    end
end
complete --command %(prog_name)s --no-files --arguments '(%(complete_func)s)'
"""


def completer(shell: str) -> BashComplete | ZshComplete | FishComplete:
    """The shell's completer; its command is set once the line says which to build."""
    classes: dict[str, type[_Bash | _Zsh | _Fish]] = {"bash": _Bash, "zsh": _Zsh, "fish": _Fish}
    return classes[shell](TyperCommand(PROG), {}, PROG, COMPLETE_VAR)


def _line_args(line: str) -> tuple[list[str], str]:
    """The words before the cursor and the word being completed ("" after a space)."""
    words = split_arg_string(line)[1:]
    if words and not line.endswith((" ", "\t")):
        return words[:-1], words[-1]
    return words, ""


def _past_break(value: str, typed: str, breaks: str) -> str:
    """The part of `value` that replaces the word bash completes: bash splits the line at
    COMP_WORDBREAKS (`:`, `=` …), so after `report:to` it replaces only `to`."""
    chars = set(breaks) - set("\"'")
    cut = max((i + 1 for i, ch in enumerate(typed) if ch in chars), default=0)
    if not cut:
        return value
    # click completes the value of `--opt=x` after the `=`
    used = typed if value.startswith(typed) else typed.rpartition("=")[2]
    full = typed[: len(typed) - len(used)] + value
    return full[cut:] if full.startswith(typed[:cut]) else value


def _zsh_quoted(text: str) -> str:
    # inside "…" within the single-quoted `_arguments` spec that the script evals
    return (
        text.replace('"', '""')
        .replace("'", "''")
        .replace("$", "\\$")
        .replace("`", "\\`")
        .replace(":", r"\\:")
    )


class _Bash(BashComplete):
    source_template = _BASH

    def source(self) -> str:
        return self.source_template % self.source_vars()  # typer's also probes bash's version

    def get_completion_args(self) -> tuple[list[str], str]:
        line = os.environ.get(LINE_VAR)
        if line is None:  # click's protocol: COMP_WORDS and COMP_CWORD
            return super().get_completion_args()
        return _line_args(line)

    def complete(self) -> str:
        args, incomplete = self.get_completion_args()
        items = self.get_completions(args, incomplete)
        breaks = os.environ.get(BREAKS_VAR, "")
        return "\n".join(_past_break(item.value, incomplete, breaks) for item in items)


class _Zsh(ZshComplete):
    source_template = _ZSH

    def source(self) -> str:
        return self.source_template % self.source_vars()

    def format_completion(self, item: CompletionItem) -> str:
        # typer's renders the help through rich: 50 ms more on every TAB
        if item.help:
            return f'"{_zsh_quoted(item.value)}":"{_zsh_quoted(item.help)}"'
        return f'"{_zsh_quoted(item.value)}"'


class _Fish(FishComplete):
    source_template = _FISH

    def source(self) -> str:
        return self.source_template % self.source_vars()

    def format_completion(self, item: CompletionItem) -> str:
        if item.help:
            return f"{item.value}\t{' '.join(item.help.split())}"
        return str(item.value)
