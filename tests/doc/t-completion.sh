#!/bin/bash
# The bash completion (completion/p11mtls) offers every command of 'p11mtls --help',
# every subcommand and option of 'p11mtls COMMAND --help', and nothing else: it is run
# here through bash-completion the way an interactive shell runs it, and its answers
# are compared with lists read from the tool's help.
# shellcheck source=../fixtures/lib.sh
source "$(dirname "$0")/../fixtures/lib.sh"
fx_workdir doc-completion
bc=/usr/share/bash-completion/bash_completion
[ -r "$bc" ] || bail_out "bash-completion is not installed ($bc)"
# shellcheck source=/dev/null
source "$bc"
# shellcheck source=../../completion/p11mtls
source "$P11M_SRCDIR/completion/p11mtls"

# complete WORD...: what completing the last word of "p11mtls WORD..." offers, sorted.
complete_words() {
    COMP_WORDS=(p11mtls "$@")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMP_LINE="${COMP_WORDS[*]}"
    COMP_POINT=${#COMP_LINE}
    COMPREPLY=()
    _p11mtls p11mtls "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
    printf '%s\n' "${COMPREPLY[@]}" | words
}
# words: the words of stdin, sorted, unique, on one line.
words() { tr ' ' '\n' | sed '/^$/d' | sort -u | paste -sd ' '; }
help_of() { "$P11M_TOOL" "$@" --help 2>&1; }

mapfile -t commands < <(help_of | sed -n '/^Commands:/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p')
plan $((1 + 2 * ${#commands[@]} + 2))
is "p11mtls <TAB>: the commands of 'p11mtls --help'" "$(complete_words "")" \
    "$(printf '%s --help --version' "${commands[*]}" | words)"
for cmd in "${commands[@]}"; do
    text=$(help_of "$cmd")
    subs=$(sed -nE "s/^(Usage:)?[[:space:]]*p11mtls $cmd ([a-z][a-z-]*)([[:space:]].*)?$/\2/p" \
        <<<"$text" | words)
    # Options are every -x/--xyz the help names, except in quotes (other commands').
    # shellcheck disable=SC2001
    opts=$(sed "s/'[^']*'//g" <<<"$text" |
        grep -oE '(^|[^[:alnum:]-])--?[[:alpha:]][[:alnum:]-]*' |
        sed -E 's/^[^-]+//' | grep -vxE -- '--help|-h' | words)
    if [ -n "$subs" ]; then
        is "p11mtls $cmd <TAB>: its subcommands" "$(complete_words "$cmd" "")" \
            "$(echo "$subs --help" | words)"
        first=${subs%% *}
        got=$(complete_words "$cmd" "$first" -)
    else
        ok "p11mtls $cmd has no subcommands to offer"
        got=$(complete_words "$cmd" -)
    fi
    want="$opts --help"
    [ "$cmd" != run ] || want+=" --"
    is "p11mtls $cmd ${first:+$first }-<TAB>: the options of 'p11mtls $cmd --help'" "$got" \
        "$(echo "$want" | words)"
    first=
done
like "--type <TAB> offers the key types" "$(complete_words key generate --type "")" "ec:P-256"
like "run -- <TAB> completes the command to run" "$(complete_words run -- basena 2>/dev/null)" \
    "basename"
finish
