#!/usr/bin/env bash
# The Debian package's lifecycle in a throwaway root, in a network namespace
# of its own (the maintainer scripts' `nft` never sees the host's ruleset):
# install OLD, check the installed config, add a ban, upgrade to NEW (the ban
# and an edited conffile survive), remove (table `inet shield` deleted, state
# kept), purge (state, config and table gone). No service is started: the root
# has no running systemd, so the postinst enables nothing and starts nothing.
#
#   scripts/package-lifecycle.sh OLD.deb NEW.deb --debootstrap [DIR]   # a Debian 12 minbase root (network; ~2 min)
#   scripts/package-lifecycle.sh OLD.deb NEW.deb --host-root           # a root of the host's sh, coreutils, sed, nft
#
# With --host-root the root has no dpkg database of its own packages, so the
# install uses --force-depends (libc6, libgcc-s1 are not recorded there).
# Needs root, dpkg, unshare; `nft` is copied from the host into the root.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "run as root (dpkg --root, unshare)" >&2; exit 1; }
[ $# -ge 3 ] || { sed -n '2,13p' "$0" >&2; exit 2; }
old="$(realpath "$1")" new="$(realpath "$2")" mode="$3" dir="${4:-}"

if [ -z "${SHIELD_LIFECYCLE_NETNS:-}" ]; then
  export SHIELD_LIFECYCLE_NETNS=1
  exec unshare --net -- "$0" "$@"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
force=()
copy_with_libs() { # copies host executables and the libraries they load into $root
  for b in "$@"; do
    install -D -m 0755 "$b" "$root$b"
    ldd "$b" 2>/dev/null | grep -o '/[^ ]*' | while read -r l; do install -D -m 0755 "$l" "$root$l"; done
  done
}
case "$mode" in
  --debootstrap)
    root="${dir:-$work/root}"
    if [ ! -x "$root/usr/bin/dpkg" ]; then
      start=$(date +%s)
      debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
        || { tail "$work/debootstrap.log" >&2; exit 1; }
      echo "debootstrap minbase bookworm: $(( $(date +%s) - start )) s"
    fi
    ;;
  --host-root)
    root="$work/root"
    mkdir -p "$root"/{tmp,etc,run,usr/bin,usr/sbin,usr/lib,usr/lib64,var/lib/dpkg/{info,updates,triggers}}
    : > "$root/var/lib/dpkg/status"
    mkdir -p "$root/dev" && mknod -m 0666 "$root/dev/null" c 1 3
    ln -s usr/bin "$root/bin"; ln -s usr/sbin "$root/sbin"; ln -s usr/lib "$root/lib"; ln -s usr/lib64 "$root/lib64"
    copy_with_libs /usr/bin/dash /usr/bin/rm /usr/bin/mkdir /usr/bin/chmod /usr/bin/rmdir /usr/bin/sed /usr/bin/head
    ln -s dash "$root/usr/bin/sh"
    force=(--force-depends)
    ;;
  *) echo "mode: --debootstrap [DIR] or --host-root" >&2; exit 2 ;;
esac
# nft from the host (neither root has nftables): the postrm's `nft` acts on this namespace.
root_nft() { chroot "$root" /usr/local/sbin/nft "$@"; }
install -D -m 0755 "$(command -v nft)" "$root/usr/local/sbin/nft"
for l in $(ldd "$(command -v nft)" | grep -o '/[^ ]*'); do [ -e "$root$l" ] || install -D -m 0755 "$l" "$root$l"; done

dpkg_() { dpkg --root="$root" "${force[@]}" "$@" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; exit 1; }; }
fail() { echo "FAIL: $*" >&2; exit 1; }
status() { dpkg --root="$root" -s shield 2>/dev/null | sed -n 's/^Status: //p'; }
version() { dpkg --root="$root" -s shield 2>/dev/null | sed -n 's/^Version: //p'; }
cfg="$work/probe.toml"
printf '[store]\npath = "%s/var/lib/shield/shield.db"\n[api]\nsocket = "%s/run/shield/shield.sock"\n[firewall]\nbackend = "none"\n' "$root" "$root" > "$cfg"
shield_() { "$root/usr/bin/shield" --config "$cfg" "$@"; }

# 1. install the older package
dpkg_ -i "$old"
[ "$(status)" = "install ok installed" ] || fail "not installed: $(status)"
for f in usr/bin/shield lib/systemd/system/shield.service etc/shield/shield.toml usr/share/man/man8/shield.8.gz; do
  [ -e "$root/$f" ] || fail "/$f missing after install"
done
[ "$(stat -c %a "$root/var/lib/shield")" = 700 ] || fail "/var/lib/shield is $(stat -c %a "$root/var/lib/shield"), want 700"
wants="$root/etc/systemd/system/multi-user.target.wants/shield.service"
if [ -x "$root/usr/bin/deb-systemd-helper" ]; then
  [ -L "$wants" ] || fail "deb-systemd-helper is here but shield.service was not enabled"
  enabled="enabled with deb-systemd-helper"
else
  [ ! -e "$wants" ] || fail "enabled without deb-systemd-helper"
  enabled="not enabled: no deb-systemd-helper in this root"
fi
echo "install $(version): ok (files, /var/lib/shield 0700, $enabled, no service started)"
# 2. the installed binary checks the installed default config
if [ "$mode" = --debootstrap ]; then # the root's own libc: the binary runs on Debian 12
  chroot "$root" /usr/bin/shield check >/dev/null || fail "shield check in the root"
  echo "shield check (in the chroot, /etc/shield/shield.toml): ok"
else
  "$root/usr/bin/shield" check --config "$root/etc/shield/shield.toml" >/dev/null || fail "shield check on the default config"
  echo "shield check --config ROOT/etc/shield/shield.toml (host libraries): ok"
fi
# 3. a ban in the package's store, the daemon's table, an edited conffile
shield_ decisions add 203.0.113.7 --duration 4h --reason lifecycle >/dev/null 2>&1
shield_ decisions list | grep -q 203.0.113.7 || fail "ban not listed before the upgrade"
root_nft add table inet shield
echo "# edited by the administrator" >> "$root/etc/shield/shield.toml"
# 4. upgrade
before="$(version)"
dpkg_ -i "$new"
[ "$(version)" != "$before" ] || fail "version unchanged by the upgrade"
shield_ decisions list | grep -q 203.0.113.7 || fail "ban lost in the upgrade"
grep -q "edited by the administrator" "$root/etc/shield/shield.toml" || fail "conffile edit lost in the upgrade"
root_nft list table inet shield >/dev/null 2>&1 || fail "table inet shield deleted by an upgrade"
echo "upgrade $before -> $(version): ok (ban kept, conffile edit kept, table kept)"
# 5. remove: bans lifted, state and config kept
dpkg_ -r shield
[ ! -e "$root/usr/bin/shield" ] || fail "binary left after remove"
[ "$(status)" = "deinstall ok config-files" ] || fail "after remove: $(status)"
[ -f "$root/var/lib/shield/shield.db" ] || fail "store deleted by remove"
[ -f "$root/etc/shield/shield.toml" ] || fail "config deleted by remove"
! root_nft list table inet shield >/dev/null 2>&1 || fail "table inet shield left after remove"
echo "remove: ok (table inet shield deleted, store and config kept)"
# 6. purge: everything gone
root_nft add table inet shield
dpkg_ -P shield
[ -z "$(status)" ] || fail "still known to dpkg after purge: $(status)"
[ ! -e "$wants" ] || fail "shield.service still enabled after purge"
for d in var/lib/shield etc/shield run/shield; do [ ! -e "$root/$d" ] || fail "/$d left after purge"; done
! root_nft list table inet shield >/dev/null 2>&1 || fail "table inet shield left after purge"
echo "purge: ok (store, config and table gone)"
echo "lifecycle: ok"
