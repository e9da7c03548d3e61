# bash completion for Skiff's kubectl (`skiff` and a `kubectl` link to it).
# Load it with: source <(kubectl completion bash)
# Each Tab asks the command itself: `<cmd> __completeNoDesc <words before> <current word>` prints
# one candidate per line, then `:<directive>` (1 error, 2 no space after, 4 no file names).
__skiff_kubectl_complete() {
    local current=${COMP_WORDS[COMP_CWORD]}
    local -a before=("${COMP_WORDS[@]:1:COMP_CWORD-1}")
    local -a lines
    mapfile -t lines < <("${COMP_WORDS[0]}" __completeNoDesc "${before[@]}" "$current" 2>/dev/null)
    ((${#lines[@]} > 0)) || return 0
    local directive=${lines[${#lines[@]}-1]#:}
    unset 'lines[${#lines[@]}-1]'
    [[ $directive =~ ^[0-9]+$ ]] || directive=0
    ((directive & 1)) && return 0
    ((directive & 2)) && compopt -o nospace 2>/dev/null
    ((directive & 4)) && compopt +o default 2>/dev/null
    COMPREPLY=()
    local line
    for line in "${lines[@]}"; do
        [[ -n $line && $line == "$current"* ]] && COMPREPLY+=("$line")
    done
    return 0
}
complete -o default -F __skiff_kubectl_complete kubectl skiff
