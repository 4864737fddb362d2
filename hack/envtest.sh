#!/usr/bin/env bash
# Provides kube-apiserver and etcd for controller-runtime's envtest and prints the folder that
# holds them (the value for KUBEBUILDER_ASSETS) on stdout. Progress goes to stderr.
#
# In order:
#   1. KUBEBUILDER_ASSETS already set and holding both binaries: use it as it is.
#   2. bin/k8s/<version>-<os>-<arch>/ already holding both: use it (a second run takes seconds).
#   3. setup-envtest (pinned, installed into bin/): fast where its download site is reachable.
#   4. Build both from the Go module proxy with the builder modules in hack/envtest/, which stay
#      out of the project's go.mod. A cold build takes about 10 minutes on 2 cores.
#
# Usage: hack/envtest.sh [kubernetes-version]
set -euo pipefail

version="${1:-1.37.2}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
localbin="${LOCALBIN:-$root/bin}"
goos="$(go env GOOS)"
goarch="$(go env GOARCH)"
dest="$localbin/k8s/$version-$goos-$goarch"
setup_envtest_version="v0.25.1"

log() { echo "envtest: $*" >&2; }

# has_binaries also checks that kube-apiserver reports the wanted version (an
# unstamped build reports v0.0.0-master, which Helm's kubeVersion checks refuse).
has_binaries() {
	[ -x "$1/kube-apiserver" ] && [ -x "$1/etcd" ] &&
		"$1/kube-apiserver" --version 2>/dev/null | grep -q "v$version\$"
}

if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
	if has_binaries "$KUBEBUILDER_ASSETS"; then
		echo "$KUBEBUILDER_ASSETS"
		exit 0
	fi
	log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks kube-apiserver or etcd; providing them in $dest"
fi

if has_binaries "$dest"; then
	echo "$dest"
	exit 0
fi

mkdir -p "$localbin"

# 3. setup-envtest, which downloads release binaries.
setup_envtest="$localbin/setup-envtest-$setup_envtest_version"
if [ ! -x "$setup_envtest" ]; then
	log "installing setup-envtest $setup_envtest_version"
	if GOBIN="$localbin" go install "sigs.k8s.io/controller-runtime/tools/setup-envtest@$setup_envtest_version" >&2; then
		mv "$localbin/setup-envtest" "$setup_envtest"
	fi
fi
if [ -x "$setup_envtest" ]; then
	log "trying setup-envtest for kube-apiserver and etcd $version"
	if path="$("$setup_envtest" use "$version" --bin-dir "$localbin" -p path 2>/dev/null)" && has_binaries "$path"; then
		mkdir -p "$dest"
		cp "$path/kube-apiserver" "$path/etcd" "$dest/"
		[ -x "$path/kubectl" ] && cp "$path/kubectl" "$dest/"
		echo "$dest"
		exit 0
	fi
	log "setup-envtest could not download the binaries (no internet?); building them from the Go module proxy"
fi

# 4. Build from source. Run the two builds one after the other (2 cores), printing a heartbeat so a
# first-time user knows the command is alive.
build() {
	local name="$1" module="$root/hack/envtest/$1"
	local start=$SECONDS tmp
	tmp="$(mktemp -d)"
	log "building $name from the Go module proxy (cold: up to 10 minutes; cached afterwards)"
	local ldflags="-s"
	if [ "$name" = kube-apiserver ]; then
		# Stamp the version as Kubernetes' own build does.
		local v="k8s.io/component-base/version"
		ldflags="$ldflags -X $v.gitVersion=v$version -X $v.gitMajor=${version%%.*}"
		ldflags="$ldflags -X $v.gitMinor=$(echo "$version" | cut -d. -f2) -X $v.gitTreeState=clean"
	fi
	(cd "$module" && go build -trimpath -ldflags="$ldflags" -o "$tmp/$name" .) >&2 &
	local pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		sleep 30
		kill -0 "$pid" 2>/dev/null && log "still building $name ($((SECONDS - start))s)"
	done
	if ! wait "$pid"; then
		rm -rf "$tmp"
		log "building $name failed"
		exit 1
	fi
	mkdir -p "$dest"
	mv "$tmp/$name" "$dest/$name"
	rm -rf "$tmp"
	log "built $name in $((SECONDS - start))s"
}

[ -x "$dest/etcd" ] || build etcd
has_binaries "$dest" || build kube-apiserver
echo "$dest"
