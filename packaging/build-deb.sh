#!/usr/bin/env bash
# packaging/build-deb.sh — builds the Debian packages into target/debian/:
#   offbox_VERSION-1_ARCH.deb         the appliance package (binary, units, udev rules,
#                                     sysusers.d, tmpfiles.d, conffile, man pages, completions)
#   offbox-rescue_VERSION-1_ARCH.deb  the rescue kit (no default features, libc only)
# then runs lintian on both when it is installed (packaging/README.md lists the tags kept).
#
# Usage: bash packaging/build-deb.sh [--no-lintian]
# Installs cargo-deb (crates.io) and lintian (Debian) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

lintian=1
[[ "${1:-}" == --no-lintian ]] && lintian=0

if ! cargo deb --version >/dev/null 2>&1; then
  echo "build-deb: installing cargo-deb" >&2
  cargo install cargo-deb --locked
fi
if ((lintian)) && ! command -v lintian >/dev/null; then
  echo "build-deb: installing lintian" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends lintian >/dev/null
fi

gen=target/packaging
rm -rf "$gen"
mkdir -p "$gen/man" "$gen/rescue-man" "$gen/completions"

# The full package. Its manual pages (examples/manpages.rs) and completions come from the
# clap definitions of the binary it ships.
echo "build-deb: building offbox (release)" >&2
cargo build --release --locked --bin offbox --example manpages
target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
bin="$target_dir/release/offbox"
"$target_dir/release/examples/manpages" "$gen/man"
"$bin" completions bash >"$gen/completions/offbox.bash"
"$bin" completions zsh >"$gen/completions/_offbox"
"$bin" completions fish >"$gen/completions/offbox.fish"

# The conffile: the example config with every setting commented out, so that it does
# nothing until it is filled in (every command, and the units, then stop with exit 1 and
# "missing field `keys`").
{
  cat <<'HEAD'
# /etc/offbox/offbox.toml: the configuration of offbox(1) and of its units
# (offbox-run.service, offbox-watch.service, offbox-selfcheck.service).
#
# Every setting below is commented out: until you fill it in, offbox does nothing, and
# its commands stop with an error that names the first missing key. Uncomment and adapt
# what you need; /usr/share/doc/offbox/operator-guide.md explains every key, and
# /usr/share/doc/offbox/examples/offbox.toml is the same example uncommented. Secrets are
# never in this file: it names the files that hold them (owner root or offbox, group
# offbox, mode 0640 or stricter). Then enable the service:
#   offbox selfcheck && systemctl enable --now offbox-run.timer offbox-watch.timer
#
HEAD
  # The example's own header speaks of the repository; the settings follow it.
  awk 'started || !/^#/ { started = 1 } started' examples/offbox.toml |
    sed -E 's/^([^#[:space:]])/#\1/'
} >"$gen/offbox.toml"

echo "build-deb: packaging offbox" >&2
cargo deb --no-build --locked --output "$target_dir/debian/"

# The rescue kit: the same crate without default features, built in a target directory of
# its own so that the two feature sets do not rebuild each other on every run.
export CARGO_TARGET_DIR="$target_dir/rescue-kit-build"
echo "build-deb: building offbox-rescue (release, no default features)" >&2
cargo build --release --locked --no-default-features --bin offbox --example manpages
"$CARGO_TARGET_DIR/release/examples/manpages" "$gen/rescue-man" offbox-rescue
echo "build-deb: packaging offbox-rescue" >&2
cargo deb --no-build --locked --variant rescue --output "$target_dir/debian/"
unset CARGO_TARGET_DIR

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
debs=("$target_dir"/debian/offbox_"$version"-1_*.deb "$target_dir"/debian/offbox-rescue_"$version"-1_*.deb)
ls -l "${debs[@]}"
if ((lintian)); then
  # Errors fail the build; warnings are printed. The tags kept on purpose are overridden
  # in the packages (packaging/lintian-overrides*; packaging/README.md says why).
  lintian --fail-on error "${debs[@]}"
fi
