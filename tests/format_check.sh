#!/bin/sh
# Every C source and header is formatted with the repository's .clang-format.
set -eu
cd "$(dirname "$0")/.."
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build/*')
# shellcheck disable=SC2086
clang-format --dry-run --Werror $files
echo "format_check: $(echo "$files" | wc -w) files match .clang-format"
