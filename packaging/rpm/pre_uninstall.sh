# pipe %preun ($1: 0 on erase, 1 on upgrade): Fedora's %systemd_preun. On erase, stop and
# disable the socket and the broker; config and keys stay (see post_uninstall.sh).
set -e
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now piped.socket piped.service >/dev/null 2>&1 || true
fi
exit 0
