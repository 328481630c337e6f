# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_enforcer_global_optspecs
    string join \n h/help V/version
end

function __fish_enforcer_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_enforcer_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_enforcer_using_subcommand
    set -l cmd (__fish_enforcer_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c enforcer -n "__fish_enforcer_needs_command" -s h -l help -d 'Print help'
complete -c enforcer -n "__fish_enforcer_needs_command" -s V -l version -d 'Print version'
complete -c enforcer -n "__fish_enforcer_needs_command" -f -a "daemon" -d 'Run the enforcement daemon in the foreground'
complete -c enforcer -n "__fish_enforcer_needs_command" -f -a "detach" -d 'Remove the enforcement of an instance: its programs detach and its pinned maps are deleted (root only). With --socket (or, given neither flag, when the default daemon runs) the daemon does it and stops; with --bpffs the pins are removed directly'
complete -c enforcer -n "__fish_enforcer_needs_command" -f -a "status" -d 'The daemon\'s state: mode, attachments, policy, maps, names, events'
complete -c enforcer -n "__fish_enforcer_needs_command" -f -a "reload" -d 'Ask the daemon to re-read its policy (root only)'
complete -c enforcer -n "__fish_enforcer_needs_command" -f -a "policy" -d 'Check or print policies'
complete -c enforcer -n "__fish_enforcer_needs_command" -f -a "flows" -d 'The blocked flows, most recent first, from the daemon\'s store'
complete -c enforcer -n "__fish_enforcer_needs_command" -f -a "doctor" -d 'Check that this host can run the enforcer and that it runs: kernel, BTF, cgroup v2, bpffs, the program and map types (loaded, never attached), memlock, the pinned instance, DNS visibility, the service. Each check says ok, info, warn or FAIL and what to do. Exit 0: all ok (info included); 1: a warning; 2: a failure'
complete -c enforcer -n "__fish_enforcer_needs_command" -f -a "check" -d 'What will the kernel do with NAME or IP? A name is resolved now and each of its addresses judged by the enforced maps with the programs\' own lookups; the rules that matched are named. Asks the daemon when it runs, else reads the pinned maps itself. Exit 0: not blocked (some address passes, or audit mode); 1: blocked (the kernel denies every address); 2: error. With a port (`8.8.8.8:853/tcp`, `[2001:db8::1]:853`, `dns.google:443`), traffic to that port is judged, rules with a port included (both protocols unless one is given)'
complete -c enforcer -n "__fish_enforcer_using_subcommand daemon" -l policy -d 'Policy file [default: /etc/enforcer/policy.json if it exists, else the embedded default]' -r -F
complete -c enforcer -n "__fish_enforcer_using_subcommand daemon" -l cgroup -d 'Enforce only in this cgroup (v2) and below [default: the whole host]' -r -F
complete -c enforcer -n "__fish_enforcer_using_subcommand daemon" -l xdp-iface -d 'Also filter this interface with XDP (repeatable)' -r
complete -c enforcer -n "__fish_enforcer_using_subcommand daemon" -l bpffs -d 'bpffs directory for this instance\'s pins' -r -F
complete -c enforcer -n "__fish_enforcer_using_subcommand daemon" -l socket -d 'Control socket path' -r -F
complete -c enforcer -n "__fish_enforcer_using_subcommand daemon" -l state-dir -d 'Directory for persistent state' -r -F
complete -c enforcer -n "__fish_enforcer_using_subcommand daemon" -l resolv-conf -d 'The resolver configuration read for DNS servers when the policy names none (followed while running)' -r -F
complete -c enforcer -n "__fish_enforcer_using_subcommand daemon" -s h -l help -d 'Print help'
complete -c enforcer -n "__fish_enforcer_using_subcommand detach" -l bpffs -d 'The instance\'s bpffs pin directory [default: /sys/fs/bpf/enforcer]' -r -F
complete -c enforcer -n "__fish_enforcer_using_subcommand detach" -l socket -d 'The instance\'s control socket [default: /run/enforcer/control.sock]' -r -F
complete -c enforcer -n "__fish_enforcer_using_subcommand detach" -l json
complete -c enforcer -n "__fish_enforcer_using_subcommand detach" -s h -l help -d 'Print help'
complete -c enforcer -n "__fish_enforcer_using_subcommand status" -l socket -r -F
complete -c enforcer -n "__fish_enforcer_using_subcommand status" -l json
complete -c enforcer -n "__fish_enforcer_using_subcommand status" -s h -l help -d 'Print help'
complete -c enforcer -n "__fish_enforcer_using_subcommand reload" -l socket -r -F
complete -c enforcer -n "__fish_enforcer_using_subcommand reload" -l json
complete -c enforcer -n "__fish_enforcer_using_subcommand reload" -s h -l help -d 'Print help'
complete -c enforcer -n "__fish_enforcer_using_subcommand policy; and not __fish_seen_subcommand_from validate show default schema" -s h -l help -d 'Print help'
complete -c enforcer -n "__fish_enforcer_using_subcommand policy; and not __fish_seen_subcommand_from validate show default schema" -f -a "validate" -d 'Validate policy files, each on its own, and print their warnings (dangerous but valid shapes: an allow over a whole address family, a ban over loopback or the resolvers, a mode set by a drop-in). Exit 0: every file is valid (with --strict: and has no warning); 1: a file is invalid; 2: with --strict, a file has warnings'
complete -c enforcer -n "__fish_enforcer_using_subcommand policy; and not __fish_seen_subcommand_from validate show default schema" -f -a "show" -d 'Show the merged policy (main file and drop-ins); with --resolved, every name with its addresses, TTL and state'
complete -c enforcer -n "__fish_enforcer_using_subcommand policy; and not __fish_seen_subcommand_from validate show default schema" -f -a "default" -d 'Print the embedded default policy'
complete -c enforcer -n "__fish_enforcer_using_subcommand policy; and not __fish_seen_subcommand_from validate show default schema" -f -a "schema" -d 'Print the JSON Schema of the policy format'
complete -c enforcer -n "__fish_enforcer_using_subcommand policy; and __fish_seen_subcommand_from validate" -l json -d 'One JSON object per file'
complete -c enforcer -n "__fish_enforcer_using_subcommand policy; and __fish_seen_subcommand_from validate" -l strict -d 'Fail (exit 2) on any warning'
complete -c enforcer -n "__fish_enforcer_using_subcommand policy; and __fish_seen_subcommand_from validate" -l with-drop-ins -d 'Read each FILE as the daemon reads a main policy: merged with the drop-ins of its drop-in directory'
complete -c enforcer -n "__fish_enforcer_using_subcommand policy; and __fish_seen_subcommand_from validate" -s h -l help -d 'Print help'
complete -c enforcer -n "__fish_enforcer_using_subcommand policy; and __fish_seen_subcommand_from show" -l policy -d 'Policy file [default: /etc/enforcer/policy.json if it exists, else the embedded default], with its drop-ins' -r -F
complete -c enforcer -n "__fish_enforcer_using_subcommand policy; and __fish_seen_subcommand_from show" -l state-dir -d 'The daemon\'s state directory (its last resolved state)' -r -F
complete -c enforcer -n "__fish_enforcer_using_subcommand policy; and __fish_seen_subcommand_from show" -l resolved
complete -c enforcer -n "__fish_enforcer_using_subcommand policy; and __fish_seen_subcommand_from show" -l json
complete -c enforcer -n "__fish_enforcer_using_subcommand policy; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c enforcer -n "__fish_enforcer_using_subcommand policy; and __fish_seen_subcommand_from default" -s h -l help -d 'Print help'
complete -c enforcer -n "__fish_enforcer_using_subcommand policy; and __fish_seen_subcommand_from schema" -s h -l help -d 'Print help'
complete -c enforcer -n "__fish_enforcer_using_subcommand flows" -l since -d 'Only flows seen within this long (10m, 2h, 7d)' -r
complete -c enforcer -n "__fish_enforcer_using_subcommand flows" -l pid -r
complete -c enforcer -n "__fish_enforcer_using_subcommand flows" -l exe -d 'Executable path, exactly' -r
complete -c enforcer -n "__fish_enforcer_using_subcommand flows" -l user -d 'User name or uid' -r
complete -c enforcer -n "__fish_enforcer_using_subcommand flows" -l domain -d 'A banned name the destination resolved from' -r
complete -c enforcer -n "__fish_enforcer_using_subcommand flows" -l name -d 'The name an application asked for (or one on its CNAME chain) whose DNS answer gave the destination' -r
complete -c enforcer -n "__fish_enforcer_using_subcommand flows" -l limit -r
complete -c enforcer -n "__fish_enforcer_using_subcommand flows" -l socket -d 'The daemon\'s control socket (asked first)' -r -F
complete -c enforcer -n "__fish_enforcer_using_subcommand flows" -l state-dir -d 'The daemon\'s state directory (read when the daemon is not running)' -r -F
complete -c enforcer -n "__fish_enforcer_using_subcommand flows" -l json -d 'One JSON object per line'
complete -c enforcer -n "__fish_enforcer_using_subcommand flows" -l follow -d 'Keep printing the matching flows as the daemon writes them (about once a second; each row\'s COUNT is the flow\'s attempts so far); exit 3 when the daemon stops'
complete -c enforcer -n "__fish_enforcer_using_subcommand flows" -s h -l help -d 'Print help'
complete -c enforcer -n "__fish_enforcer_using_subcommand doctor" -l bpffs -d 'The instance\'s bpffs pin directory' -r -F
complete -c enforcer -n "__fish_enforcer_using_subcommand doctor" -l socket -d 'The daemon\'s control socket' -r -F
complete -c enforcer -n "__fish_enforcer_using_subcommand doctor" -l iface -d 'Also check native XDP support of this interface (repeatable)' -r
complete -c enforcer -n "__fish_enforcer_using_subcommand doctor" -l resolv-conf -d 'The resolver configuration whose DNS visibility is judged' -r -F
complete -c enforcer -n "__fish_enforcer_using_subcommand doctor" -l json -d '{"checks":[{"name","status","detail","fix"}],"worst"}'
complete -c enforcer -n "__fish_enforcer_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c enforcer -n "__fish_enforcer_using_subcommand check" -l policy -d 'Policy file [default: /etc/enforcer/policy.json if it exists, else the embedded default], with its drop-ins' -r -F
complete -c enforcer -n "__fish_enforcer_using_subcommand check" -l state-dir -d 'The daemon\'s state directory (its last resolved state)' -r -F
complete -c enforcer -n "__fish_enforcer_using_subcommand check" -l socket -d 'The daemon\'s control socket (asked first; offline otherwise)' -r -F
complete -c enforcer -n "__fish_enforcer_using_subcommand check" -l bpffs -d 'bpffs directory of the instance to ask when the daemon is not running' -r -F
complete -c enforcer -n "__fish_enforcer_using_subcommand check" -l json
complete -c enforcer -n "__fish_enforcer_using_subcommand check" -s h -l help -d 'Print help'
