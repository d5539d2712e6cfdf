# syncd in a container: config mounted at /etc/syncd/syncd.toml, state in
# /var/lib/syncd, watched data under /data.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
WORKDIR /src
RUN python -m venv /opt/syncd
# Dependencies first, so source edits do not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p syncd && touch syncd/__init__.py \
    && /opt/syncd/bin/pip install --no-cache-dir . \
    && /opt/syncd/bin/pip uninstall -y syncd
COPY syncd ./syncd
RUN /opt/syncd/bin/pip install --no-cache-dir --no-deps .

FROM ${BASE_IMAGE}
RUN useradd --system --uid 10001 --home /var/lib/syncd --shell /usr/sbin/nologin syncd \
    && mkdir -p /var/lib/syncd /data /etc/syncd && chown syncd:syncd /var/lib/syncd
COPY --from=build /opt/syncd /opt/syncd
ENV PATH=/opt/syncd/bin:$PATH \
    SYNCD_CONFIG=/etc/syncd/syncd.toml \
    PYTHONUNBUFFERED=1
USER syncd
VOLUME ["/var/lib/syncd", "/data"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["syncd"]
CMD ["run"]
