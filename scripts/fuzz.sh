#!/usr/bin/env bash
# Runs every fuzz target of the repository for a while each (default 5m),
# one after another, keeping what they find under each package's
# testdata/fuzz/ (new failing inputs become regression cases there).
#   bash scripts/fuzz.sh            # 5 minutes per target
#   bash scripts/fuzz.sh 30s        # a quick pass
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$HOME/go/bin:$PATH
time=${1:-5m}
failed=()
while IFS=: read -r file name; do
  pkg=./$(dirname "$file")
  echo "== $pkg $name ($time)"
  if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$time" -parallel 1 "$pkg"; then
    failed+=("$pkg $name")
  fi
done < <(grep -rHo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' . | sed 's|^\./||; s|:func |:|' | sort)
if ((${#failed[@]})); then
  printf 'fuzz: failures in\n'; printf '  %s\n' "${failed[@]}"; exit 1
fi
echo "fuzz: every target ran $time without a failure"
