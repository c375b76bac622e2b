#!/usr/bin/env bash
# Builds the glm-image-sglang image, tagged with the git tag or short commit (never "latest").
set -Eeuo pipefail

usage() {
	cat <<'EOF'
Usage: ./build.sh [--save] [--offline] [--tag TAG] [--dry-run] [-- EXTRA_DOCKER_BUILD_ARGS...]

Builds glm-image-sglang:<tag> from this directory with BuildKit and --progress=plain.
<tag> is the exact git tag of HEAD, else the short commit, plus "-dirty" when the tree has changes.

Options:
  --save       also write glm-image-sglang-<tag>.tar.gz (docker save, gzip -1; pigz when installed) and its
               .sha256, for air-gap transfer; docker load, podman load and skopeo read it as it is
  --offline    install every Python package from pip-cache/ (filled by ./download-packages.sh);
               the build then needs no package index at all
  --tag TAG    use TAG instead of the git-derived one ("latest" is refused)
  --dry-run    print the docker build command and exit
  -h, --help   this text

Environment (each is passed to the Dockerfile as a build argument when set):
  BASE_IMAGE             CUDA devel base (default nvidia/cuda:13.0.2-cudnn-devel-ubuntu24.04; host driver >= 580)
  SGLANG_SOURCE          git:REF | pypi:VERSION | pypi | wheelhouse         (default git:main)
                         git:BRANCH and git:TAG are resolved to the commit first (git ls-remote)
  DIFFUSERS_SOURCE       git:REF | pypi:VERSION | pypi | wheelhouse | pinned (default git:main)
  TRANSFORMERS_SOURCE    git:REF | pypi:VERSION | pypi | wheelhouse | pinned (default git:main)
  SGLANG_GIT_URL, DIFFUSERS_GIT_URL, TRANSFORMERS_GIT_URL   git mirrors
  FLASH_ATTN             source | skip                                        (default source)
  FLASH_ATTN_VERSION     flash-attn release compiled from source             (default 2.8.3)
  FLASH_ATTN_CUDA_ARCHS  GPU architectures to compile for                    (default "80;90")
  MAX_JOBS               parallel compile jobs (~4-8 GB RAM each)            (default 2)
  KERNEL_ARCHS           GPU architectures cold-start kernels are prebuilt for, or none
                                                                             (default "8.0 8.9 9.0a 10.0a")
  PIP_INDEX, PIP_EXTRA_INDEX   a package mirror (e.g. Artifactory, devpi)
  HTTP_PROXY, HTTPS_PROXY, NO_PROXY   passed as build arguments (not stored in the image)
  CA_BUNDLE              CA bundle for an intercepting proxy, given to the build as a BuildKit secret
                         (never stored in a layer); default /etc/ssl/certs/ca-certificates.crt if present
  IMAGE_NAME             default glm-image-sglang
  DOCKER                 docker client to use (default docker; it must support BuildKit)
EOF
}

die() {
	echo "ERROR: $*" >&2
	exit 2
}

# bytes -> "12.3 GB"
gb() { awk -v b="$1" 'BEGIN { printf "%.1f GB", b / 1e9 }'; }

# Is there room to save image $1 here? docker save (classic image store) first writes the whole image,
# uncompressed, under the daemon's data root, then streams it out; the .tar.gz needs about half the
# image's size in this directory. Checked before the save starts, so the error names where to free how much.
check_save_space() {
	local image=$1 size root="" root_free here need what
	size="$("$docker" image inspect -f '{{.Size}}' "$image" 2>/dev/null)" || return 0
	[[ $size =~ ^[0-9]+$ ]] || return 0
	here="$(df -B1 --output=avail . | tail -1)"
	need=$((size / 2))
	# the data root is a path on this machine only for a local daemon; containerd's store streams instead
	if [[ ${DOCKER_HOST:-unix://} == unix://* ]] &&
		! "$docker" info -f '{{.DriverStatus}}' 2>/dev/null | grep -q containerd.snapshotter; then
		root="$("$docker" info -f '{{.DockerRootDir}}' 2>/dev/null)" || root=""
	fi
	if [[ -n $root ]] && root_free="$(df -B1 --output=avail "$root" 2>/dev/null | tail -1)"; then
		if [[ "$(df --output=source "$root" | tail -1)" == "$(df --output=source . | tail -1)" ]]; then
			need=$((need + size))
		elif ((root_free < size)); then
			die "not enough disk to save $image: docker save first writes the whole image ($(gb "$size"))" \
				"under docker's data root $root, which has $(gb "$root_free") free: free disk there" \
				"(docker builder prune; docker image prune) or point dockerd's DOCKER_TMPDIR at a bigger disk"
		fi
	fi
	if ((here < need)); then
		what="$(gb $((size / 2))) for the .tar.gz"
		((need > size / 2)) && what+=" + $(gb "$size") that docker save first writes under $root, on the same disk"
		die "not enough disk to save $image: about $(gb "$need") must be free on the disk of $PWD ($what)" \
			"and $(gb "$here") are: free disk (docker builder prune; docker image prune), or run" \
			"./build.sh --save from another disk"
	fi
}

image_tag() {
	local tag
	if ! git -C "$HERE" rev-parse --git-dir >/dev/null 2>&1; then
		die "not a git checkout: pass --tag TAG (the tag records which source the image was built from)"
	fi
	tag="$(git -C "$HERE" describe --tags --exact-match 2>/dev/null || git -C "$HERE" rev-parse --short=12 HEAD)"
	if [[ -n "$(git -C "$HERE" status --porcelain --untracked-files=no)" ]]; then
		tag="${tag}-dirty"
	fi
	echo "$tag"
}

_main() {
	HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
	local save=0 offline=0 dry_run=0 tag="" extra=()
	while (($#)); do
		case "$1" in
		--save) save=1 ;;
		--offline) offline=1 ;;
		--dry-run) dry_run=1 ;;
		--tag)
			[[ $# -ge 2 ]] || die "--tag needs a value"
			tag="$2"
			shift
			;;
		-h | --help)
			usage
			exit 0
			;;
		--)
			shift
			extra=("$@")
			break
			;;
		*) die "unknown option $1 (see ./build.sh --help)" ;;
		esac
		shift
	done
	[[ -n "$tag" ]] || tag="$(image_tag)"
	[[ "$tag" != "latest" ]] || die "refusing to tag 'latest': tags must say which source an image came from. Use --tag v1.2.3 or a git tag."
	[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "invalid tag '$tag'"

	# git:BRANCH or git:TAG -> the commit it names now: the build argument (BuildKit's cache key) changes
	# exactly when the commit does, and the image's labels and build-info.json name the commit
	local pkg src_var url_var spec resolved requested=()
	for pkg in sglang diffusers transformers; do
		src_var="${pkg^^}_SOURCE"
		url_var="${pkg^^}_GIT_URL"
		spec="${!src_var:-}"
		if [[ -z $spec ]] && ((offline)); then continue; fi
		spec="${spec:-git:main}"
		resolved="$(python3 "$HERE/src/glm_image_sglang/buildspec.py" resolve "$pkg" "$spec" "${!url_var:-}")" || exit 2
		requested+=("$pkg=$spec")
		[[ $resolved == "$spec" ]] || echo "$pkg: $spec is $resolved"
		printf -v "$src_var" '%s' "$resolved"
	done

	local image="${IMAGE_NAME:-glm-image-sglang}:${tag}"
	local docker="${DOCKER:-docker}"
	local vcs_ref source_url
	vcs_ref="$(git -C "$HERE" rev-parse --verify -q HEAD 2>/dev/null || echo unknown)"
	source_url="$(git -C "$HERE" remote get-url origin 2>/dev/null || true)"
	if [[ $source_url =~ ^[a-z+]+://[^/]*@ ]]; then source_url=""; fi # never a URL with credentials in a label
	local cmd=("$docker" build --progress=plain -t "$image" -f "$HERE/Dockerfile"
		--build-arg "IMAGE_VERSION=$tag" --build-arg "VCS_REF=$vcs_ref"
		--build-arg "BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
		--build-arg "MAX_JOBS=${MAX_JOBS:-2}" --build-arg "REQUESTED_SOURCES=${requested[*]}"
		--build-arg "SOURCE_URL=$source_url")
	local var
	for var in BASE_IMAGE SGLANG_SOURCE DIFFUSERS_SOURCE TRANSFORMERS_SOURCE SGLANG_GIT_URL DIFFUSERS_GIT_URL \
		TRANSFORMERS_GIT_URL FLASH_ATTN FLASH_ATTN_VERSION FLASH_ATTN_CUDA_ARCHS KERNEL_ARCHS PIP_INDEX PIP_EXTRA_INDEX \
		HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
		if [[ -n "${!var:-}" ]]; then cmd+=(--build-arg "$var=${!var}"); fi
	done
	local ca="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
	if [[ -n "${CA_BUNDLE:-}" && ! -r "$ca" ]]; then die "CA_BUNDLE=$ca is not a readable file"; fi
	if [[ -r "$ca" ]]; then cmd+=(--secret "id=ca,src=$ca"); fi

	# a git mirror on this machine (a loopback URL) is reachable from the build only on the host network
	if ! ((offline)); then
		for var in SGLANG_GIT_URL DIFFUSERS_GIT_URL TRANSFORMERS_GIT_URL; do
			if [[ ${!var:-} =~ ^[a-z+]+://(localhost|127\.[0-9.]+|\[::1\])([:/]|$) ]]; then
				cmd+=(--network host)
				break
			fi
		done
	fi

	if ((offline)); then
		if ! compgen -G "$HERE/pip-cache/*.whl" >/dev/null; then
			die "pip-cache/ has no wheels: run ./download-packages.sh on a connected machine first"
		fi
		local port
		port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
		python3 -m http.server --bind 127.0.0.1 --directory "$HERE/pip-cache" "$port" >/dev/null 2>&1 &
		WHEELHOUSE_PID=$!
		trap 'kill "${WHEELHOUSE_PID:-}" 2>/dev/null || true' EXIT
		cmd+=(--network host --build-arg "WHEELHOUSE_URL=http://127.0.0.1:$port/")
		for var in SGLANG_SOURCE DIFFUSERS_SOURCE TRANSFORMERS_SOURCE; do
			if [[ -z "${!var:-}" ]]; then cmd+=(--build-arg "$var=wheelhouse"); fi
		done
	fi
	cmd+=("${extra[@]}" "$HERE")

	echo "+ ${cmd[*]}"
	((dry_run)) && exit 0
	DOCKER_BUILDKIT=1 "${cmd[@]}"
	echo "built $image"
	if ((save)); then
		# compressed: about half the image's size to store and carry (46 % for the CI image); written under
		# a temporary name, so an interrupted save never leaves a file that looks complete
		local tar="glm-image-sglang-${tag}.tar.gz" gz=(gzip -1)
		if command -v pigz >/dev/null; then gz=(pigz -1); fi
		check_save_space "$image"
		echo "saving $image to $tar (${gz[0]})"
		if ! "$docker" save "$image" | "${gz[@]}" >"$tar.partial"; then
			rm -f "$tar.partial"
			die "docker save $image > $tar failed (free disk in $PWD? about half the image size is needed)"
		fi
		mv "$tar.partial" "$tar"
		sha256sum "$tar" >"$tar.sha256"
		echo "saved $tar ($(du -h "$tar" | cut -f1)) and $tar.sha256"
		echo "on the closed side: sha256sum -c $tar.sha256 && docker load -i $tar"
	fi
}

_main "$@"
