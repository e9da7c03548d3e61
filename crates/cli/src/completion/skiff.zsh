#compdef kubectl skiff
# zsh completion for Skiff's kubectl (`skiff` and a `kubectl` link to it).
# Load it with: source <(kubectl completion zsh)   (after compinit)
# Each Tab asks the command itself: `<cmd> __complete <words before> <current word>` prints one
# candidate per line (`name<TAB>description`), then `:<directive>` (1 error, 2 no space after,
# 4 no file names).
__skiff_kubectl_complete() {
    local -a lines candidates
    lines=("${(@f)$(${words[1]} __complete "${(@)words[2,CURRENT-1]}" "${words[CURRENT]}" 2>/dev/null)}")
    (( ${#lines} > 0 )) || return 1
    local directive=${lines[-1]#:}
    lines=("${(@)lines[1,-2]}")
    [[ $directive == <-> ]] || directive=0
    (( directive & 1 )) && return 1
    local line name
    for line in "${lines[@]}"; do
        [[ -n $line ]] || continue
        name=${line%%$'\t'*}
        if [[ $line == *$'\t'* ]]; then
            candidates+=("${name//:/\\:}:${line#*$'\t'}")
        else
            candidates+=("${name//:/\\:}")
        fi
    done
    if (( ${#candidates} == 0 )); then
        (( directive & 4 )) || _files
        return
    fi
    if (( directive & 2 )); then
        _describe -t completions 'completions' candidates -S ''
    else
        _describe -t completions 'completions' candidates
    fi
}
compdef __skiff_kubectl_complete kubectl skiff
