#!/usr/bin/env sh
# Register Studio with the desktop: run from the unpacked bundle folder (dist/studio/share).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
apps="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
mime="${XDG_DATA_HOME:-$HOME/.local/share}/mime"
icons="${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor/256x256/apps"
mkdir -p "$apps" "$mime/packages" "$icons" "$HOME/.local/bin"
ln -sf "$here/studio" "$HOME/.local/bin/studio"
sed "s|^Exec=studio|Exec=$here/studio|" "$here/share/studio.desktop" > "$apps/studio.desktop"
cp "$here/share/studio-mime.xml" "$mime/packages/studio.xml"
cp "$here/share/icon.png" "$icons/studio.png"
command -v update-mime-database >/dev/null && update-mime-database "$mime" || true
command -v update-desktop-database >/dev/null && update-desktop-database "$apps" || true
echo "Studio installed: launch it from your applications menu or run 'studio'."
