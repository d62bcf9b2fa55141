# pipe %postun ($1: 0 on erase, 1 on upgrade): Fedora's %systemd_postun_with_restart.
#
# On upgrade, restart the broker on the new binary; the socket stays, so connections
# queue. On erase rpm keeps what it does not own or what was changed: a modified
# /etc/pipe/piped.toml or sshd snippet is saved as .rpmsave, and the key directory, the
# account's home (authorized_keys) and piped's state stay, as does the `pipe` account
# (its shell is gone, so sshd refuses it). rpm has no purge: remove those by hand.
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
    if [ "$1" -ge 1 ]; then
        systemctl try-restart piped.service >/dev/null 2>&1 || true
    fi
fi
if [ "$1" -eq 0 ]; then
    rmdir /run/pipe 2>/dev/null || true
fi
exit 0
