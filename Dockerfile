# syncd in a container. Configuration: a TOML file mounted at
# /etc/syncd/syncd.toml (${VAR} in it comes from the container's environment);
# state in the volume /var/lib/syncd; watched data under the volume /data.
#
#   docker build -t syncd .
#   docker build --secret id=pip_ca,src=/path/to/ca-bundle.pem -t syncd .   # behind a TLS-intercepting proxy
#   docker build --build-arg BASE_IMAGE=registry.example/python:3.11-slim -t syncd .
#
# HEALTHCHECK needs the docker image format (podman/buildah: --format docker).
ARG BASE_IMAGE=python:3.11-slim

# --- build: a virtualenv with the dependencies, then syncd itself ------------
FROM ${BASE_IMAGE} AS build
SHELL ["/bin/sh", "-eu", "-c"]
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DEFAULT_TIMEOUT=120
WORKDIR /src
RUN python3 -m venv /opt/syncd
# The dependencies first (only pyproject.toml decides them), so editing the
# source does not reinstall them. The optional secret pip_ca is a complete PEM
# CA bundle pip trusts instead of its own (a corporate or intercepting proxy);
# as a secret it never lands in a layer. The image installs the `postgres`
# extra (a fleet on PostgreSQL works in containers too) and not `sandbox`: the
# fake platforms are for the demo and the tests, not for production.
COPY pyproject.toml README.md ./
RUN --mount=type=secret,id=pip_ca \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi; \
    mkdir -p syncd && touch syncd/__init__.py; \
    /opt/syncd/bin/pip install --no-cache-dir '.[postgres]' ; \
    /opt/syncd/bin/pip uninstall --yes syncd; \
    rm -rf syncd build ./*.egg-info
COPY syncd ./syncd
RUN --mount=type=secret,id=pip_ca \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi; \
    /opt/syncd/bin/pip install --no-cache-dir --no-deps . ; \
    /opt/syncd/bin/syncd --version

# --- runtime: the virtualenv, a non-root user, nothing else ---------------------
FROM ${BASE_IMAGE}
SHELL ["/bin/sh", "-eu", "-c"]
RUN groupadd --system --gid 10001 syncd \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/syncd \
       --no-create-home --shell /usr/sbin/nologin syncd \
    && mkdir -p /var/lib/syncd /data /etc/syncd \
    && chown 10001:10001 /var/lib/syncd && chmod 0700 /var/lib/syncd
COPY --from=build /opt/syncd /opt/syncd
ENV PATH=/opt/syncd/bin:$PATH \
    SYNCD_CONFIG=/etc/syncd/syncd.toml \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /var/lib/syncd
VOLUME ["/var/lib/syncd", "/data"]
# /healthz and /metrics when the config sets [server] listen = "0.0.0.0:9187".
EXPOSE 9187
# The daemon rewrites <state>/heartbeat.json every 5 s while every stage is
# alive; `syncd health` fails when it is stale or says a stage stalled.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["syncd", "health"]
# syncd is PID 1 (exec form, no shell): it handles SIGTERM itself and drains
# ([daemon] shutdown_timeout, default 30 s): stop with a longer timeout,
# e.g. `docker stop -t 45`.
STOPSIGNAL SIGTERM
ENTRYPOINT ["syncd"]
CMD ["run"]
