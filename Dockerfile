# MIDOG 2025 Track 2 container: reads /input, writes /output, model from /opt/ml/model, no network.
# Output: one {"class", "confidence"} per page; confidence is p(atypical) for every figure, whatever its class,
# because the official evaluator takes confidence as each figure's ROC score as it stands.
#   docker build -t mitotype-midog25 .
#   mitotype export --model runs/cv --include-base --out model.tar.gz   (upload as the model tarball)
#   or run it on the model that ships inside the package: docker run -e MITOTYPE_MODEL_DIR=shipped ...
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg
RUN groupadd -r user && useradd -m --no-log-init -r -g user user \
    && mkdir -p /opt/app /input /output /opt/ml/model && chown user:user /opt/app /output
WORKDIR /opt/app
COPY --chown=user:user pyproject.toml README.md ./
COPY --chown=user:user src ./src
RUN python -m pip install --no-cache-dir ".[efficientnet]"
USER user
ENTRYPOINT ["mitotype", "challenge"]
