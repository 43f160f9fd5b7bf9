# MIDOG 2025 Track 2 container: reads /input, writes /output, model from /opt/ml/model, no network.
# Output: one {"class", "confidence"} per page; confidence is p(atypical) for every figure, whatever its class,
# because the official evaluator takes confidence as each figure's ROC score as it stands.
#
# One Dockerfile, two choices (build arguments), the same stages either way:
#   BASE    where Python comes from: a registry image (default python:3.11-slim-bookworm), or a local base image
#           on a machine without a registry (tools/container-test makes one with debootstrap:
#           --build-arg BASE=localhost/mitotype-base:bookworm). It needs python3 with venv, useradd and a shell.
#   EXTRAS  what mitotype brings: "" (default) is the light install, no torch: ONNX Runtime on the CPU, for models
#           with a current model.onnx (the shipped model, `mitotype export --onnx`); a model without one is
#           refused in one line naming the training extra. "train,efficientnet" is the PyTorch build for any model.
#
#   docker build -t mitotype-midog25 .                                       light, the shipped model built in
#   docker build --build-arg BASE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime \
#                --build-arg EXTRAS=train,efficientnet -t mitotype-midog25-gpu .            PyTorch on the GPU
#   tools/container-test [--variant torch]          builds here from a local base, tests it, writes its figures
#
# Which torch: on the GPU base, the CUDA 12.4 build of torch 2.5.1 that the base image holds (the venv sees the
# base's packages and pip keeps a torch that satisfies the requirement): the platform runs the container on a
# 16 GB GPU. On a base without torch, pip takes it from the index the project's own install uses (the pip
# configuration mounted into the build, never copied into the image); TORCH pins the build to take, e.g.
# TORCH="torch==2.13.0+cpu torchvision==0.28.0+cpu" (tools/container-test pins the CPU wheels of pip's wheel folders:
# this machine has no GPU and the CUDA wheels are GBs). torchvision must be the same build as torch (timm imports
# it): where the index holds only the CUDA torchvision, as here, a CPU torch image runs ONNX models alone.
#
# The model: /opt/ml/model (where the platform unpacks the uploaded model tarball, `mitotype export`) comes first;
# /opt/app/model, the model that ships inside the package, answers when nothing is mounted there.
ARG BASE=python:3.11-slim-bookworm

# Every command runs in this stage: the user, the venv, the install, the link to the shipped model. A build that
# mounts the host's pip configuration and wheel folders into its steps (tools/container-test) leaves their mount
# points here, and only what the image needs is copied on. The venv's own setuptools goes (a package that needs it
# brings it back) and so does pip: nothing is installed at run time.
FROM ${BASE} AS build
ARG EXTRAS=""
ARG TORCH=""
WORKDIR /opt/build
COPY pyproject.toml README.md ./
COPY src ./src
RUN groupadd -r user && useradd -m --no-log-init -r -g user user \
    && mkdir -p /opt/app /opt/ml/model /input /output \
    && python3 -m venv --system-site-packages /opt/venv \
    && /opt/venv/bin/pip uninstall --yes --quiet setuptools \
    && /opt/venv/bin/pip install --no-cache-dir ${TORCH} ".${EXTRAS:+[$EXTRAS]}" \
    && /opt/venv/bin/pip uninstall --yes --quiet pip \
    && ln -s "$(/opt/venv/bin/python -c 'import mitotype.models.shipped as s; print(s.get_shipped_model().folder)')" \
        /opt/app/model

# The image: the base, its user and the venv, put together by COPY alone (no command runs, so no build mount).
FROM ${BASE}
COPY --from=build /etc/passwd /etc/group /etc/shadow /etc/gshadow /etc/
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/app /opt/app
COPY --from=build /opt/ml /opt/ml
COPY --from=build /input /input
COPY --from=build --chown=user:user /home/user /home/user
COPY --from=build --chown=user:user /output /output
# Caches (ONNX Runtime's device id, ...) go to the tmpfs the platform mounts on /tmp: the root is read-only.
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg \
    XDG_CACHE_HOME=/tmp/.cache MPLCONFIGDIR=/tmp/matplotlib PATH=/opt/venv/bin:$PATH
USER user
WORKDIR /opt/app
ENTRYPOINT ["mitotype", "challenge"]
