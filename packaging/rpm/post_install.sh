# pipe %post ($1: 1 on install, 2 on upgrade). rpm has no systemd or sysusers automation
# for a package built without rpmbuild, so this is Fedora's %sysusers_create_package,
# %tmpfiles_create and %systemd_post by hand, plus what the .deb's postinst does. Never
# touches sshd: it checks the configuration and says what to run.
set -e

# The account, from /usr/lib/sysusers.d/pipe.conf; an existing account is left alone.
if ! getent passwd pipe >/dev/null; then
    if command -v systemd-sysusers >/dev/null; then
        systemd-sysusers pipe.conf
    fi
    if ! getent passwd pipe >/dev/null; then
        getent group pipe >/dev/null || groupadd --system pipe
        useradd --system --gid pipe --home-dir /var/lib/pipe --no-create-home \
            --shell /usr/bin/pipe-shell --comment "pipe service account" pipe
    fi
    # A locked `!*` password field makes sshd with `UsePAM no` refuse even key logins;
    # `*` matches no password either.
    usermod -p '*' pipe
fi

# Root's 0755: the account must not change its own authorized_keys. Only when missing.
for dir in /var/lib/pipe /var/lib/pipe/.ssh /etc/pipe/keys; do
    [ -d "$dir" ] || install -d -m 0755 -o root -g root "$dir"
done

if [ -d /run/systemd/system ]; then
    # /run/pipe root:pipe 0750 before the socket, which would make it root:root.
    systemd-tmpfiles --create pipe.conf >/dev/null || true
    systemctl daemon-reload >/dev/null || true
    if [ "$1" -eq 1 ]; then
        # Fedora policy: presets decide what is enabled; pipe's socket is harmless to run
        # (the broker only starts on the first connection), so it asks to be started too.
        systemctl preset piped.socket >/dev/null 2>&1 || true
        if systemctl -q is-enabled piped.socket 2>/dev/null; then
            systemctl start piped.socket >/dev/null 2>&1 || true
        fi
    fi
fi

if [ -x /usr/sbin/sshd ]; then
    if out=$(/usr/sbin/sshd -t 2>&1); then
        echo "pipe: sshd accepts /etc/ssh/sshd_config.d/50-pipe.conf; apply it with: systemctl reload sshd"
    else
        echo "pipe: warning: 'sshd -t' fails, so /etc/ssh/sshd_config.d/50-pipe.conf is not active; fix it, then: systemctl reload sshd" >&2
        printf '%s\n' "$out" | sed 's/^/pipe:   /' >&2
    fi
fi
if [ "$1" -eq 1 ]; then
    echo "pipe: next: pipe-admin key add USER KEYFILE, then: ssh pipe@HOST help; pipe-admin doctor checks the setup"
fi
exit 0
