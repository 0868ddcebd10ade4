#!/usr/bin/env bash
# Build the docs site and take a screenshot of every page in headless
# Chromium: light and dark colour scheme, desktop and phone width.
#
#   bash tools/screenshots.sh [OUT_DIR]        # default: site-shots/ (ignored by git)
#   PAGES="performance api" bash tools/screenshots.sh
#
# Needs mkdocs with the docs extra (pip install -e ".[docs]") and a
# Chromium (Debian: apt-get install chromium). Each page is shot in a tall
# window (HEIGHT, default 5000 px) so that most of it is in one image.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-site-shots}
site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
browser=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome)}
python=${PYTHON:-python3}

"$python" -m mkdocs build --quiet --site-dir "$site" 2>/dev/null || "$python" -m mkdocs build --site-dir "$site"
mkdir -p "$out"

pages=${PAGES:-$(cd "$site" && find . -name index.html ! -path './assets/*' | sed 's|^\./||; s|/index.html$||; s|^index.html$|.|' | sort)}
height=${HEIGHT:-5000}
for page in $pages; do
    name=${page//\//-}
    [ "$page" = . ] && name=home
    for scheme in light dark; do
        flags=()
        [ "$scheme" = dark ] && flags+=(--force-dark-mode --blink-settings=preferredColorScheme=0)
        for width in 1280 390; do
            shot="$out/$name-$scheme-$width.png"
            "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --mute-audio \
                --user-data-dir="$site/.profile-$scheme" "${flags[@]}" \
                --window-size="$width,$height" --screenshot="$shot" \
                "file://$site/$page/index.html" >/dev/null 2>&1
            echo "$shot"
        done
    done
done
