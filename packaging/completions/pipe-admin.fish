# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_pipe_admin_global_optspecs
    string join \n keys-dir= authorized-keys= forced-command= h/help V/version
end

function __fish_pipe_admin_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_pipe_admin_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_pipe_admin_using_subcommand
    set -l cmd (__fish_pipe_admin_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c pipe-admin -n "__fish_pipe_admin_needs_command" -l keys-dir -d 'Key directory, the source of truth' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_needs_command" -l authorized-keys -d 'authorized_keys file whose managed block is rewritten' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_needs_command" -l forced-command -d 'Forced command of each key line (`--user USER --key FINGERPRINT` is appended)' -r
complete -c pipe-admin -n "__fish_pipe_admin_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c pipe-admin -n "__fish_pipe_admin_needs_command" -s V -l version -d 'Print version'
complete -c pipe-admin -n "__fish_pipe_admin_needs_command" -f -a "user" -d 'Add, remove and list users'
complete -c pipe-admin -n "__fish_pipe_admin_needs_command" -f -a "key" -d 'Add, remove and list users\' SSH public keys'
complete -c pipe-admin -n "__fish_pipe_admin_needs_command" -f -a "sync" -d 'Rewrite the managed block of authorized_keys from the key directory'
complete -c pipe-admin -n "__fish_pipe_admin_needs_command" -f -a "doctor" -d 'Check that sshd, the service account, the broker socket and the keys fit together'
complete -c pipe-admin -n "__fish_pipe_admin_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and not __fish_seen_subcommand_from add remove rm list ls help" -l keys-dir -d 'Key directory, the source of truth' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and not __fish_seen_subcommand_from add remove rm list ls help" -l authorized-keys -d 'authorized_keys file whose managed block is rewritten' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and not __fish_seen_subcommand_from add remove rm list ls help" -l forced-command -d 'Forced command of each key line (`--user USER --key FINGERPRINT` is appended)' -r
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and not __fish_seen_subcommand_from add remove rm list ls help" -s h -l help -d 'Print help'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and not __fish_seen_subcommand_from add remove rm list ls help" -f -a "add" -d 'Add a user (with no keys yet: add them with `pipe-admin key add USER`)'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and not __fish_seen_subcommand_from add remove rm list ls help" -f -a "remove" -d 'Remove a user and all of their keys'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and not __fish_seen_subcommand_from add remove rm list ls help" -f -a "rm" -d 'Remove a user and all of their keys'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and not __fish_seen_subcommand_from add remove rm list ls help" -f -a "list" -d 'List the users, one per line'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and not __fish_seen_subcommand_from add remove rm list ls help" -f -a "ls" -d 'List the users, one per line'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and not __fish_seen_subcommand_from add remove rm list ls help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and __fish_seen_subcommand_from add" -l keys-dir -d 'Key directory, the source of truth' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and __fish_seen_subcommand_from add" -l authorized-keys -d 'authorized_keys file whose managed block is rewritten' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and __fish_seen_subcommand_from add" -l forced-command -d 'Forced command of each key line (`--user USER --key FINGERPRINT` is appended)' -r
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and __fish_seen_subcommand_from remove" -l keys-dir -d 'Key directory, the source of truth' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and __fish_seen_subcommand_from remove" -l authorized-keys -d 'authorized_keys file whose managed block is rewritten' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and __fish_seen_subcommand_from remove" -l forced-command -d 'Forced command of each key line (`--user USER --key FINGERPRINT` is appended)' -r
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and __fish_seen_subcommand_from rm" -l keys-dir -d 'Key directory, the source of truth' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and __fish_seen_subcommand_from rm" -l authorized-keys -d 'authorized_keys file whose managed block is rewritten' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and __fish_seen_subcommand_from rm" -l forced-command -d 'Forced command of each key line (`--user USER --key FINGERPRINT` is appended)' -r
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and __fish_seen_subcommand_from rm" -s h -l help -d 'Print help'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and __fish_seen_subcommand_from list" -l keys-dir -d 'Key directory, the source of truth' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and __fish_seen_subcommand_from list" -l authorized-keys -d 'authorized_keys file whose managed block is rewritten' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and __fish_seen_subcommand_from list" -l forced-command -d 'Forced command of each key line (`--user USER --key FINGERPRINT` is appended)' -r
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and __fish_seen_subcommand_from ls" -l keys-dir -d 'Key directory, the source of truth' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and __fish_seen_subcommand_from ls" -l authorized-keys -d 'authorized_keys file whose managed block is rewritten' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and __fish_seen_subcommand_from ls" -l forced-command -d 'Forced command of each key line (`--user USER --key FINGERPRINT` is appended)' -r
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and __fish_seen_subcommand_from ls" -s h -l help -d 'Print help'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "add" -d 'Add a user (with no keys yet: add them with `pipe-admin key add USER`)'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Remove a user and all of their keys'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the users, one per line'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and not __fish_seen_subcommand_from add remove rm list ls help" -l keys-dir -d 'Key directory, the source of truth' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and not __fish_seen_subcommand_from add remove rm list ls help" -l authorized-keys -d 'authorized_keys file whose managed block is rewritten' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and not __fish_seen_subcommand_from add remove rm list ls help" -l forced-command -d 'Forced command of each key line (`--user USER --key FINGERPRINT` is appended)' -r
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and not __fish_seen_subcommand_from add remove rm list ls help" -s h -l help -d 'Print help'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and not __fish_seen_subcommand_from add remove rm list ls help" -f -a "add" -d 'Add one public key for an existing user; prints its `key list` line'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and not __fish_seen_subcommand_from add remove rm list ls help" -f -a "remove" -d 'Remove a user\'s key, given by fingerprint (SHA256:…) or by name'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and not __fish_seen_subcommand_from add remove rm list ls help" -f -a "rm" -d 'Remove a user\'s key, given by fingerprint (SHA256:…) or by name'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and not __fish_seen_subcommand_from add remove rm list ls help" -f -a "list" -d 'List keys as `USER NAME FINGERPRINT TYPE COMMENT`, of one user or of all'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and not __fish_seen_subcommand_from add remove rm list ls help" -f -a "ls" -d 'List keys as `USER NAME FINGERPRINT TYPE COMMENT`, of one user or of all'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and not __fish_seen_subcommand_from add remove rm list ls help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and __fish_seen_subcommand_from add" -l name -d 'Key name: [A-Za-z0-9][A-Za-z0-9._-]{0,63} (default: from the key\'s comment, else key-N)' -r
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and __fish_seen_subcommand_from add" -l keys-dir -d 'Key directory, the source of truth' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and __fish_seen_subcommand_from add" -l authorized-keys -d 'authorized_keys file whose managed block is rewritten' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and __fish_seen_subcommand_from add" -l forced-command -d 'Forced command of each key line (`--user USER --key FINGERPRINT` is appended)' -r
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and __fish_seen_subcommand_from remove" -l keys-dir -d 'Key directory, the source of truth' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and __fish_seen_subcommand_from remove" -l authorized-keys -d 'authorized_keys file whose managed block is rewritten' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and __fish_seen_subcommand_from remove" -l forced-command -d 'Forced command of each key line (`--user USER --key FINGERPRINT` is appended)' -r
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and __fish_seen_subcommand_from rm" -l keys-dir -d 'Key directory, the source of truth' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and __fish_seen_subcommand_from rm" -l authorized-keys -d 'authorized_keys file whose managed block is rewritten' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and __fish_seen_subcommand_from rm" -l forced-command -d 'Forced command of each key line (`--user USER --key FINGERPRINT` is appended)' -r
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and __fish_seen_subcommand_from rm" -s h -l help -d 'Print help'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and __fish_seen_subcommand_from list" -l keys-dir -d 'Key directory, the source of truth' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and __fish_seen_subcommand_from list" -l authorized-keys -d 'authorized_keys file whose managed block is rewritten' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and __fish_seen_subcommand_from list" -l forced-command -d 'Forced command of each key line (`--user USER --key FINGERPRINT` is appended)' -r
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and __fish_seen_subcommand_from list" -l json -d 'One JSON array of {user, name, fingerprint, type, comment} instead'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and __fish_seen_subcommand_from ls" -l keys-dir -d 'Key directory, the source of truth' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and __fish_seen_subcommand_from ls" -l authorized-keys -d 'authorized_keys file whose managed block is rewritten' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and __fish_seen_subcommand_from ls" -l forced-command -d 'Forced command of each key line (`--user USER --key FINGERPRINT` is appended)' -r
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and __fish_seen_subcommand_from ls" -l json -d 'One JSON array of {user, name, fingerprint, type, comment} instead'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and __fish_seen_subcommand_from ls" -s h -l help -d 'Print help'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "add" -d 'Add one public key for an existing user; prints its `key list` line'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Remove a user\'s key, given by fingerprint (SHA256:…) or by name'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "list" -d 'List keys as `USER NAME FINGERPRINT TYPE COMMENT`, of one user or of all'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand sync" -l keys-dir -d 'Key directory, the source of truth' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand sync" -l authorized-keys -d 'authorized_keys file whose managed block is rewritten' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand sync" -l forced-command -d 'Forced command of each key line (`--user USER --key FINGERPRINT` is appended)' -r
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand sync" -s h -l help -d 'Print help'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand doctor" -l service-user -d 'The shared service account the sshd snippet and the key lines are for' -r
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand doctor" -l socket -d 'The broker\'s socket' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand doctor" -l sshd-config -d 'sshd\'s main configuration file' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand doctor" -l sshd -d 'The sshd binary run with -T' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand doctor" -l keys-dir -d 'Key directory, the source of truth' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand doctor" -l authorized-keys -d 'authorized_keys file whose managed block is rewritten' -r -F
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand doctor" -l forced-command -d 'Forced command of each key line (`--user USER --key FINGERPRINT` is appended)' -r
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand doctor" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand help; and not __fish_seen_subcommand_from user key sync doctor help" -f -a "user" -d 'Add, remove and list users'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand help; and not __fish_seen_subcommand_from user key sync doctor help" -f -a "key" -d 'Add, remove and list users\' SSH public keys'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand help; and not __fish_seen_subcommand_from user key sync doctor help" -f -a "sync" -d 'Rewrite the managed block of authorized_keys from the key directory'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand help; and not __fish_seen_subcommand_from user key sync doctor help" -f -a "doctor" -d 'Check that sshd, the service account, the broker socket and the keys fit together'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand help; and not __fish_seen_subcommand_from user key sync doctor help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "add" -d 'Add a user (with no keys yet: add them with `pipe-admin key add USER`)'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "remove" -d 'Remove a user and all of their keys'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "list" -d 'List the users, one per line'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "add" -d 'Add one public key for an existing user; prints its `key list` line'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "remove" -d 'Remove a user\'s key, given by fingerprint (SHA256:…) or by name'
complete -c pipe-admin -n "__fish_pipe_admin_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "list" -d 'List keys as `USER NAME FINGERPRINT TYPE COMMENT`, of one user or of all'
