# Sourced (bash) by the scripts that run cargo: rustup's cargo on PATH, once. ext-php-rs's build
# script runs again (a rebuild of the extension) whenever PATH differs from the build before, and
# these scripts call each other: each putting it in front again made PATH, and so whether the
# extension was built again, depend on which script started the build.
if [ -x "$HOME/.cargo/bin/cargo" ] && [[ ":$PATH:" != *":$HOME/.cargo/bin:"* ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
