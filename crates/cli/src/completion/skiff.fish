# fish completion for Skiff's kubectl (`skiff` and a `kubectl` link to it).
# Load it with: kubectl completion fish | source
# Each Tab asks the command itself: `<cmd> __complete <words before> <current word>` prints one
# candidate per line (`name<TAB>description`, as fish takes them), then `:<directive>`.
function __skiff_kubectl_complete
    set -l words (commandline -opc)
    set -l current (commandline -ct)
    set -l lines ($words[1] __complete $words[2..-1] $current 2>/dev/null)
    test (count $lines) -gt 0; or return
    set -e lines[-1]
    for line in $lines
        test -n "$line"; and echo $line
    end
end
complete -c kubectl -f -a '(__skiff_kubectl_complete)'
complete -c skiff -f -a '(__skiff_kubectl_complete)'
