# glm-image-sglang: GLM-Image and Wan 2.2 behind the SGLang diffusion server, for air-gapped GPU
# hosts and OpenShift. Build with ./build.sh (it passes every argument below; ./build.sh --help).
#
# One stage on a CUDA *devel* base on purpose: Triton and SGLang's JIT kernels compile at run time
# and need gcc, nvcc and ninja in the running image.

# --- every external input, in one place ----------------------------------------------------------
# Build arguments (./build.sh passes each one that is set in its environment):
#   BASE_IMAGE             CUDA devel base. CUDA 13 needs an NVIDIA driver >= 580 on the host.
#   SGLANG_SOURCE          git:REF (branch/tag/SHA) | pypi:VERSION | pypi | wheelhouse         (git:main)
#   DIFFUSERS_SOURCE       the same, or pinned = exactly what SGLang requires                  (git:main)
#   TRANSFORMERS_SOURCE    the same, or pinned                                                 (git:main)
#   SGLANG_GIT_URL, DIFFUSERS_GIT_URL, TRANSFORMERS_GIT_URL   internal git mirrors            (GitHub)
#   FLASH_ATTN             source (compile flash-attn from source) | skip                     (source)
#   FLASH_ATTN_VERSION     flash-attn release                                                 (2.8.3)
#   FLASH_ATTN_CUDA_ARCHS  GPU archs to compile for: 80 Ampere, 90 Hopper                     (80;90)
#   MAX_JOBS               parallel nvcc jobs, ~4-8 GB RAM each                                (2)
#   KERNEL_ARCHS           GPU archs cold-start kernels are prebuilt for, or none  ("8.0 8.9 9.0a 10.0a")
#   PIP_INDEX, PIP_EXTRA_INDEX   a package mirror
#   WHEELHOUSE_URL         the offline wheelhouse ./build.sh --offline serves from pip-cache/ (no index used)
#   IMAGE_VERSION, VCS_REF, BUILD_DATE   recorded in labels and /app/build-info.json
# Secret: --secret id=ca,src=BUNDLE, a CA bundle for an intercepting proxy (never stored in a layer).
# Each ARG is declared just before the step that uses it, so changing it rebuilds only from there.
ARG BASE_IMAGE=nvidia/cuda:13.0.2-cudnn-devel-ubuntu24.04
FROM ${BASE_IMAGE}

# DL4006: fail a RUN when any command of a pipe fails. Every RUN below is bash.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

# --- system packages --------------------------------------------------------------------------------
# python3-dev        Triton compiles a CPython helper at first use (needs Python.h)
# build-essential    gcc/g++ for Triton and SGLang JIT kernels ("Failed to find C compiler" in the field)
# ninja-build        torch cpp_extension / flashinfer JIT builds
# libnuma1           sgl_kernel links it: "ImportError: libnuma.so.1" without it (seen in the field)
# tini               PID 1: reaps zombies, forwards SIGTERM
# curl               HEALTHCHECK
# git                installs from git refs (the default source)
# libglib2.0-0       OpenCV (video/image I/O in SGLang)
COPY docker/build-env.sh /usr/local/lib/glm-image-sglang/
ARG PIP_INDEX=
ARG PIP_EXTRA_INDEX=
ARG WHEELHOUSE_URL=
# DL3008: apt versions come from the pinned base image's archive snapshot; pinning them here breaks
# every time the base moves.
# hadolint ignore=DL3008
RUN --mount=type=secret,id=ca \
    source /usr/local/lib/glm-image-sglang/build-env.sh \
    && apt-get "${APT_OPTS[@]}" update \
    && apt-get "${APT_OPTS[@]}" install -y --no-install-recommends \
        python3 python3-venv python3-dev \
        build-essential ninja-build \
        libnuma1 tini curl git ca-certificates libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --no-cache-dir --upgrade "pip==25.3" setuptools wheel packaging \
    && gcc --version | head -1 && tini --version && python3 --version
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv

# --- SGLang + diffusers + transformers -----------------------------------------------------------
# The CA bundle for an intercepting proxy arrives as a BuildKit secret (--secret id=ca,src=...):
# it is mounted only while a RUN executes and never stored in a layer.
ARG SGLANG_SOURCE=git:main
ARG DIFFUSERS_SOURCE=git:main
ARG TRANSFORMERS_SOURCE=git:main
ARG SGLANG_GIT_URL=
ARG DIFFUSERS_GIT_URL=
ARG TRANSFORMERS_GIT_URL=
# Only the source-spec parser comes in here: editing the package's other code rebuilds nothing above it.
COPY src/glm_image_sglang/buildspec.py /usr/local/lib/glm-image-sglang/
# DL3013: versions come from SGLANG_SOURCE & co. (pip's argument is a variable hadolint cannot read).
# hadolint ignore=DL3013
RUN --mount=type=secret,id=ca \
    --mount=type=cache,id=glm-image-sglang-pip,target=/root/.cache/pip \
    source /usr/local/lib/glm-image-sglang/build-env.sh \
    && spec() { python3 /usr/local/lib/glm-image-sglang/buildspec.py "$@"; } \
    && sglang_req="$(spec sglang "$SGLANG_SOURCE" "$SGLANG_GIT_URL")" \
    && diffusers_req="$(spec diffusers "$DIFFUSERS_SOURCE" "$DIFFUSERS_GIT_URL")" \
    && transformers_req="$(spec transformers "$TRANSFORMERS_SOURCE" "$TRANSFORMERS_GIT_URL")" \
    && echo "sglang: $sglang_req | diffusers: ${diffusers_req:-pinned by SGLang} | transformers: ${transformers_req:-pinned by SGLang}" \
    && pip install "$sglang_req" \
    # diffusers/transformers from their own refs replace SGLang's pins; the build check below
    # verifies the combination (pip check + the GLM-Image edit path) and fails the build if it breaks.
    && overrides=() \
    && if [[ -n "$diffusers_req" ]]; then overrides+=("$diffusers_req"); fi \
    && if [[ -n "$transformers_req" ]]; then overrides+=("$transformers_req"); fi \
    && if (( ${#overrides[@]} )); then pip install --no-deps --force-reinstall "${overrides[@]}"; fi \
    && python -c "import torch, sglang, diffusers, transformers; print('torch', torch.__version__, '| diffusers', diffusers.__version__, '| transformers', transformers.__version__)"

# --- flash-attn, compiled from source -----------------------------------------------------------
ARG FLASH_ATTN=source
ARG FLASH_ATTN_VERSION=2.8.3
ARG FLASH_ATTN_CUDA_ARCHS=80;90
ARG MAX_JOBS=2
RUN --mount=type=secret,id=ca \
    source /usr/local/lib/glm-image-sglang/build-env.sh \
    && case "$FLASH_ATTN" in \
        source) \
            nvcc --version | tail -1 \
            && FLASH_ATTENTION_FORCE_BUILD=TRUE FLASH_ATTN_CUDA_ARCHS="$FLASH_ATTN_CUDA_ARCHS" MAX_JOBS="$MAX_JOBS" NVCC_THREADS=1 \
                pip install --no-cache-dir --no-build-isolation "flash-attn==${FLASH_ATTN_VERSION}" \
            && python -c "import flash_attn; print('flash-attn', flash_attn.__version__)" ;; \
        skip) echo "flash-attn: skipped (FLASH_ATTN=skip)" ;; \
        *) echo "ERROR: FLASH_ATTN=$FLASH_ATTN is not supported; use source or skip" >&2; exit 1 ;; \
    esac

# --- kernels a first start compiles, built here with no GPU (src/glm_image_sglang/kernel_seed.py) -------
# FlashInfer's RoPE and the SGLang JIT kernels that GPU starts recorded (docker/kernel-builds/*.jsonl): with
# SGLang 0.5.23 on an H200, a cold GLM-Image start was ready in 89.9 s with them, 212.5 s without; ~1 min +
# ~1 min an architecture here on 2 cores (six kernels: 65 s for 9.0a). Kept in /opt; the launcher copies them
# into CACHE_DIR at start. KERNEL_ARCHS=none builds nothing (a start compiles them, as before).
COPY src/glm_image_sglang/kernel_seed.py src/glm_image_sglang/kernel_record.py /usr/local/lib/glm-image-sglang/
COPY docker/kernel-builds/ /usr/local/lib/glm-image-sglang/kernel-builds/
ARG KERNEL_ARCHS="8.0 8.9 9.0a 10.0a"
RUN if [[ "$KERNEL_ARCHS" == none ]]; then echo "kernel prebuild: skipped (KERNEL_ARCHS=none)"; exit 0; fi \
    && read -ra archs <<< "$KERNEL_ARCHS" \
    && shopt -s nullglob && records=() && for r in /usr/local/lib/glm-image-sglang/kernel-builds/*.jsonl; do records+=(--record "$r"); done \
    && MAX_JOBS="$MAX_JOBS" python /usr/local/lib/glm-image-sglang/kernel_seed.py build /opt/glm-image-sglang/kernels "${archs[@]}" "${records[@]}" \
    && rmdir /app/data/cache /app/data \
    && cat /opt/glm-image-sglang/kernels/manifest.json \
    && rm -rf /root/.cache /tmp/*

# --- the OpenShift contract ---------------------------------------------------------------------
# Runs as UID 1001 in group 0; every writable path is group-0 writable, so the random UID that
# OpenShift assigns (always in group 0) can write too. Models are mounted read-only at /app/models;
# everything written lives under /app/data (mount an emptyDir there with a read-only root fs).
RUN useradd --uid 1001 --gid 0 --home-dir /app/data/home --no-create-home --shell /usr/sbin/nologin app \
    && mkdir -p /app/models /app/data/home /app/data/outputs /app/data/uploads /app/data/cache \
    && chown -R 1001:0 /app/data \
    && chmod -R g=u /app/data \
    && chmod 0775 /app /app/models

# --- our code (last, so editing it does not rebuild the layers above; root-owned: read-only to the
# runtime user) ----------------------------------------------------------------------------------
COPY pyproject.toml README.md /app/src/
COPY src /app/src/src
COPY --chmod=0755 entrypoint.sh /app/entrypoint.sh
# Fails the build on a broken SGLang/diffusers/transformers combination; writes /app/build-info.json.
ARG IMAGE_VERSION=dev
ARG VCS_REF=unknown
ARG BUILD_DATE=unknown
RUN pip install --no-cache-dir --no-deps --no-build-isolation /app/src \
    && glm-image-sglang-build-check --write /app/build-info.json \
        --image-version "$IMAGE_VERSION" --vcs-ref "$VCS_REF" --build-date "$BUILD_DATE" \
        --source sglang="$SGLANG_SOURCE" --source diffusers="$DIFFUSERS_SOURCE" \
        --source transformers="$TRANSFORMERS_SOURCE" --source flash-attn="$FLASH_ATTN" \
    && rm -rf /root/.cache /tmp/*

ARG BASE_IMAGE
# what was asked for (git:main) beside what went in (git:<commit>, in .sources); where the recipe lives
ARG REQUESTED_SOURCES=
ARG SOURCE_URL=
LABEL org.opencontainers.image.title="glm-image-sglang" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.description="GLM-Image and Wan 2.2 served by the SGLang diffusion server (OpenAI-compatible API on port 30000)" \
      org.opencontainers.image.version="${IMAGE_VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}" \
      io.k8s.display-name="glm-image-sglang ${IMAGE_VERSION}" \
      io.k8s.description="SGLang diffusion server for GLM-Image and Wan 2.2 (T2V-A14B, I2V-A14B, TI2V-5B)" \
      io.openshift.expose-services="30000:http" \
      io.openshift.tags="sglang,diffusion,glm-image,wan2.2,gpu" \
      glm-image-sglang.sources="sglang=${SGLANG_SOURCE} diffusers=${DIFFUSERS_SOURCE} transformers=${TRANSFORMERS_SOURCE} flash-attn=${FLASH_ATTN}" \
      glm-image-sglang.requested-sources="${REQUESTED_SOURCES}"

ENV HOME=/app/data/home \
    DATA_DIR=/app/data \
    HF_HOME=/app/models \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    DO_NOT_TRACK=1 \
    BUILD_INFO_FILE=/app/build-info.json \
    PORT=30000

WORKDIR /app/data
EXPOSE 30000
# start-period covers a multi-minute model load; the launcher's own STARTUP_TIMEOUT bounds it.
# DL3025: shell form on purpose, so ${PORT} follows the PORT setting.
# hadolint ignore=DL3025
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
    CMD curl -fsS "http://127.0.0.1:${PORT}/health" >/dev/null || exit 1
USER 1001
ENTRYPOINT ["/usr/bin/tini", "--", "/app/entrypoint.sh"]
CMD ["serve"]
