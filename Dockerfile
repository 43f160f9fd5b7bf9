# MIDOG 2025 Track 2 container: reads /input, writes /output, model from /opt/ml/model, no network.
#   docker build -t mitotype-midog25 .                 (GPU: PyTorch, any model)
#   docker build --target light -t mitotype-light .    (CPU only, no torch: models exported with --onnx, or the
#                                                       shipped one; a model without a current graph is refused
#                                                       in one line naming the training extra)
#   mitotype export --model runs/cv --include-base --out model.tar.gz   (upload as the model tarball)
#   or run it on the model that ships inside the package: docker run -e MITOTYPE_MODEL_DIR=shipped ...

# The base install: numpy, Pillow, ONNX Runtime, tifffile, safetensors (about 230 MB; starts in a second).
FROM python:3.11-slim AS light
ENV PYTHONUNBUFFERED=1
RUN groupadd -r user && useradd -m --no-log-init -r -g user user \
    && mkdir -p /opt/app /input /output /opt/ml/model && chown user:user /opt/app /output
WORKDIR /opt/app
COPY --chown=user:user pyproject.toml README.md ./
COPY --chown=user:user src ./src
RUN python -m pip install --no-cache-dir .
USER user
ENTRYPOINT ["mitotype", "challenge"]

# The default: PyTorch on the GPU, with the training extra (timm, peft, ...) that PyTorch inference needs.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime AS gpu
ENV PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg
RUN groupadd -r user && useradd -m --no-log-init -r -g user user \
    && mkdir -p /opt/app /input /output /opt/ml/model && chown user:user /opt/app /output
WORKDIR /opt/app
COPY --chown=user:user pyproject.toml README.md ./
COPY --chown=user:user src ./src
RUN python -m pip install --no-cache-dir ".[train,efficientnet]"
USER user
ENTRYPOINT ["mitotype", "challenge"]
