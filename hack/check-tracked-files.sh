#!/usr/bin/env bash
# Fails when git tracks a build output: an executable or library binary (ELF, Mach-O, PE,
# WebAssembly) or a file over 1 MiB. Build outputs belong in bin/, which git ignores.
# Run by `make verify` (and so by CI).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bad=0
while IFS= read -r -d '' f; do
	[ -f "$f" ] || continue # deleted in the work tree
	magic=$(head -c 4 -- "$f" | od -An -tx1 | tr -d ' \n')
	case "$magic" in
	7f454c46) kind="an ELF binary" ;;
	feedface | feedfacf | cefaedfe | cffaedfe | cafebabe) kind="a Mach-O binary" ;;
	4d5a*) kind="a Windows (PE) binary" ;;
	0061736d) kind="a WebAssembly binary" ;;
	*) kind="" ;;
	esac
	if [ -z "$kind" ] && [ "$(stat -c %s -- "$f")" -gt 1048576 ]; then
		kind="over 1 MiB"
	fi
	if [ -n "$kind" ]; then
		echo "tracked file $f is $kind: build outputs go in bin/ (git rm --cached it)" >&2
		bad=1
	fi
done < <(git ls-files -z)
if [ "$bad" -ne 0 ]; then
	exit 1
fi
echo "No binary or oversized file is tracked"
